// The browser side of the chat demo: the SDK (bundled by serve.ts) in a page.
// It connects to the crier that served the page, joins a room with history and
// presence, shows what was said before it came, who is here, and what is said
// now; it reconnects and recovers on its own (try stopping and starting crier).

import { CrierClient, type Member, type MessagePush, type Subscription } from "crier-client";

interface Line {
  name: string;
  text: string;
}

const $ = <T extends HTMLElement>(id: string): T => {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`#${id} is missing from the page`);
  return element as T;
};
const log = $<HTMLUListElement>("log");
const members = $<HTMLUListElement>("members");
const status = $<HTMLSpanElement>("status");
const roomInput = $<HTMLInputElement>("room");
const nameInput = $<HTMLInputElement>("name");
const text = $<HTMLInputElement>("text");
const form = $<HTMLFormElement>("send");
const button = form.querySelector("button") as HTMLButtonElement;

const params = new URLSearchParams(location.search);
roomInput.value = params.get("room") ?? roomInput.value;
nameInput.value = params.get("name") ?? `guest-${Math.floor(Math.random() * 1000)}`;

const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const client = new CrierClient(wsUrl, { info: { name: nameInput.value }, name: "crier-chat-demo/1" });

function isLine(data: unknown): data is Line {
  return (
    typeof data === "object" &&
    data !== null &&
    typeof (data as Line).name === "string" &&
    typeof (data as Line).text === "string"
  );
}

function append(className: string, who: string, what: string): void {
  const item = document.createElement("li");
  item.className = className;
  if (who !== "") {
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = who;
    item.append(name);
  }
  item.append(what);
  log.append(item);
  log.scrollTop = log.scrollHeight;
}

function show(message: MessagePush): void {
  if (isLine(message.data)) append("line", message.data.name, message.data.text);
}

const here = new Map<string, string>();
function renderMembers(): void {
  members.replaceChildren(
    ...[...here.values()].sort().map((name) => {
      const item = document.createElement("li");
      item.textContent = name;
      return item;
    }),
  );
}
function nameOf(member: Member): string {
  const info = member.info as { name?: unknown } | undefined;
  return typeof info?.name === "string" ? info.name : member.client.slice(0, 8);
}

let subscription: Subscription | undefined;

async function join(room: string): Promise<void> {
  subscription?.unsubscribe();
  log.replaceChildren();
  here.clear();
  const history = await client.history(room, { limit: 50 });
  for (const message of history.messages) show({ ...message, op: "message", room });
  subscription = client.subscribe(room, show, { since: { offset: history.offset, epoch: history.epoch } });
  subscription.on("resubscribed", ({ recovered }) => {
    if (!recovered) append("note", "", "(reconnected; some messages may be missing)");
    void refreshMembers(room);
  });
  await subscription.ready;
  await refreshMembers(room);
  append("note", "", `you joined ${room} as ${nameInput.value}`);
}

async function refreshMembers(room: string): Promise<void> {
  here.clear();
  for (const member of await client.presence(room)) here.set(member.client, nameOf(member));
  renderMembers();
}

client.on("join", (event) => {
  if (event.room !== roomInput.value) return;
  here.set(event.member.client, nameOf(event.member));
  renderMembers();
});
client.on("leave", (event) => {
  if (event.room !== roomInput.value) return;
  here.delete(event.member.client);
  renderMembers();
});
client.on("connected", () => {
  status.textContent = "connected";
  text.disabled = button.disabled = false;
});
client.on("disconnected", ({ willReconnect }) => {
  status.textContent = willReconnect ? "reconnecting…" : "disconnected";
  text.disabled = button.disabled = true;
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const line: Line = { name: nameInput.value, text: text.value.trim() };
  if (line.text === "") return;
  text.value = "";
  client
    .publish(roomInput.value, { ...line })
    .catch((error: Error) => append("note", "", `not sent: ${error.message}`));
});
roomInput.addEventListener("change", () => void join(roomInput.value));

await client.connect();
// The name went to the server with `connect` (presence shows it): fixed from now on.
nameInput.readOnly = true;
await join(roomInput.value);
document.body.dataset.ready = "true";
