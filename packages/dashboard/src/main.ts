// The operator's console (GET /dashboard): the cluster's instances and live
// charts, the busiest rooms with an inspector for one room, a user's
// connections on every instance, and recent warnings. Everything is read from
// and done through crier's HTTP API with the operator's key; the page keeps
// no state of its own beyond this tab.

import "./style.css";
import { call, forgetKey, KeyRefused, query, storedKey, storeKey } from "./api.js";
import { Charts } from "./charts.js";
import { $, ago, el, fill, row, time } from "./dom.js";
import type { Connections, History, Info, Missing, Presence, Rooms, Stats, Subscribers, Warnings } from "./types.js";

const REFRESH_MS = 2000;
const HISTORY_SHOWN = 20;
const WARNING_LABELS: Record<string, string> = {
  slow_consumer: "slow consumers closed",
  rate_limited: "rate limits hit",
  backplane_lost: "backplane lost",
  backplane_back: "backplane reconnected",
  origin_refused: "origins refused",
  connection_limit: "per-address limits hit",
  auth_failed: "auth failures",
  body_too_large: "fallback bodies over the limit",
  unknown_session: "fallback POSTs for unknown sessions",
};

const charts = new Charts($("chart-grid"));
let timer: number | undefined;
let openRoom: string | undefined;
let shownUser: string | undefined;

function showError(message: string): void {
  $("error").textContent = message;
}

function showLogin(message: string): void {
  window.clearTimeout(timer);
  timer = undefined;
  charts.clear();
  showError(message);
  $("console").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  $("key").focus();
}

/** Runs an action; a refused key signs out, any other failure is shown where `where` says. */
async function attempt(action: () => Promise<void>, where: HTMLElement = $("error")): Promise<boolean> {
  try {
    await action();
    return true;
  } catch (error) {
    if (error instanceof KeyRefused) {
      forgetKey();
      showLogin(`that key was refused: ${error.message}`);
    } else {
      where.textContent = error instanceof Error ? error.message : String(error);
    }
    return false;
  }
}

// ---- instances ---------------------------------------------------------------

function renderInstances(info: Info, stats: Stats): void {
  const now = Date.now();
  const ready = new Map(stats.nodes.map((node) => [node.node, node.ready]));
  const nodes = [...info.nodes].sort((a, b) => a.id.localeCompare(b.id));
  fill(
    "nodes",
    nodes.map((node) => {
      const age = now - node.updatedAt;
      const up = ready.get(node.id);
      const tr = row(
        [
          node.id + (node.id === info.node ? " (answered)" : ""),
          node.address,
          up === undefined ? "no answer" : up ? "reachable" : "unreachable",
          String(node.connections),
          String(node.rooms),
          `${Math.round((node.load ?? 0) * 100)}%`,
          ago(now - node.startedAt),
          ago(age),
        ],
        { "data-node": node.id },
      );
      if (age > 10_000) tr.classList.add("stale");
      if (up === false) tr.classList.add("down");
      return tr;
    }),
  );
  $("count").textContent = `${nodes.length} ${nodes.length === 1 ? "instance" : "instances"}`;
  $("connections").textContent = String(nodes.reduce((total, node) => total + node.connections, 0));
  $("rooms-total").textContent = String(nodes.reduce((total, node) => total + node.rooms, 0));
}

function renderMissing(missing: Missing[]): void {
  const unique = [...new Map(missing.map((m) => [m.node, m])).values()];
  $("missing").textContent =
    unique.length === 0 ? "" : `Not answering: ${unique.map((m) => `${m.node} (${m.error.message})`).join("; ")}`;
}

// ---- busiest rooms -------------------------------------------------------------

function renderRooms(rooms: Rooms): void {
  fill(
    "rooms",
    rooms.rooms.map((room) => {
      const open = el("button", room.room, {
        type: "button",
        class: "link",
        "aria-label": `Inspect room ${room.room}`,
      });
      open.addEventListener("click", () => inspectRoom(room.room));
      return row([open, String(room.members), String(room.messagesPerSecond)], { "data-room": room.room });
    }),
  );
  $("rooms-empty").hidden = rooms.rooms.length > 0;
}

// ---- room inspector ------------------------------------------------------------

function inspectRoom(room: string): void {
  openRoom = room;
  $("room-name").textContent = room;
  $("room").hidden = false;
  $("publish-result").textContent = "";
  fill("members", []);
  $("history").replaceChildren();
  void refreshRoom().then(() => $("room-title").focus());
}

async function refreshRoom(): Promise<void> {
  const room = openRoom;
  if (room === undefined) return;
  const subscribers = await call<Subscribers>(query("/api/subscribers", { room }));
  const [history, presence] = await Promise.all([
    subscribers.history
      ? settle(call<History>(query("/api/history", { room, limit: HISTORY_SHOWN })))
      : { error: new Error('This room keeps no history (its namespace has no "history" setting).') },
    subscribers.presence
      ? settle(call<Presence>(query("/api/presence", { room })))
      : { error: new Error("Presence is off in this room's namespace.") },
  ]);
  if (room !== openRoom) return;
  fill(
    "members",
    subscribers.subscribers.map((member) => {
      const unsubscribe = el("button", "Unsubscribe user", {
        type: "button",
        "aria-label": `Unsubscribe user ${member.user} from ${room}`,
      });
      // Anonymous connections have no user to unsubscribe by.
      unsubscribe.disabled = member.user === "";
      unsubscribe.addEventListener("click", () => {
        void attempt(async () => {
          await call("/api/unsubscribe", { user: member.user, room });
          $("publish-result").textContent = `unsubscribed ${member.user} from ${room}`;
          await refreshRoom();
        }, $("publish-result"));
      });
      return row([member.user === "" ? "(anonymous)" : member.user, member.client, member.node, unsubscribe], {
        "data-client": member.client,
      });
    }),
  );
  // A room without history or presence says so (the API's message names the setting).
  if ("error" in history) {
    $("history").replaceChildren();
    $("history-note").textContent = history.error.message;
  } else {
    $("history").replaceChildren(
      ...[...history.value.messages]
        .reverse()
        .map((message) =>
          el("li", `#${message.offset}${message.from ? ` from ${message.from}` : ""}: ${JSON.stringify(message.data)}`),
        ),
    );
    $("history-note").textContent = history.value.messages.length === 0 ? "No message kept." : "";
  }
  $("presence").textContent =
    "error" in presence
      ? presence.error.message
      : presence.value.members.map((member) => member.user || "(anonymous)").join(", ") || "Nobody.";
}

/** A call's reply or its failure, except a refused key, which still throws. */
async function settle<T>(promise: Promise<T>): Promise<{ value: T } | { error: Error }> {
  try {
    return { value: await promise };
  } catch (error) {
    if (error instanceof KeyRefused || !(error instanceof Error)) throw error;
    return { error };
  }
}

$("room-close").addEventListener("click", () => {
  openRoom = undefined;
  $("room").hidden = true;
});

$("publish").addEventListener("submit", (event) => {
  event.preventDefault();
  const room = openRoom;
  if (room === undefined) return;
  const result = $("publish-result");
  let data: unknown;
  try {
    data = JSON.parse($<HTMLTextAreaElement>("publish-data").value);
  } catch {
    result.textContent = 'That is not JSON: write a value such as {"text": "hi"} or "hi".';
    return;
  }
  void attempt(async () => {
    const reply = await call<{ offset?: number }>("/api/publish", { room, data });
    result.textContent = `published to ${room}${reply.offset === undefined ? "" : ` at offset ${reply.offset}`}`;
    await refreshRoom();
  }, result);
});

// ---- user inspector ------------------------------------------------------------

function closeWith(): { code: number; reason: string } | undefined {
  const code = Number($<HTMLInputElement>("close-code").value);
  if (!Number.isInteger(code) || code < 4000 || code > 4999) {
    $("user-result").textContent = "The close code must be a whole number from 4000 to 4999.";
    return undefined;
  }
  return { code, reason: $<HTMLInputElement>("close-reason").value };
}

async function refreshUser(): Promise<void> {
  const user = shownUser;
  if (user === undefined) return;
  const reply = await call<Connections>(query("/api/connections", { user }));
  if (user !== shownUser) return;
  $("user-view").hidden = false;
  fill(
    "user-connections",
    reply.connections.map((connection) => {
      const disconnect = el("button", "Disconnect", {
        type: "button",
        "aria-label": `Disconnect client ${connection.client}`,
      });
      disconnect.addEventListener("click", () => {
        const close = closeWith();
        if (close === undefined) return;
        void attempt(async () => {
          await call("/api/disconnect", { client: connection.client, ...close });
          $("user-result").textContent = `asked ${connection.node} to close ${connection.client} with ${close.code}`;
          await refreshUser();
        }, $("user-result"));
      });
      return row(
        [
          connection.client,
          connection.node,
          connection.transport,
          connection.address,
          time(connection.connectedAt),
          connection.rooms.join(", ") || "–",
          disconnect,
        ],
        { "data-client": connection.client },
      );
    }),
  );
  $("user-empty").hidden = reply.connections.length > 0;
  renderMissing(reply.missing);
}

$("user-form").addEventListener("submit", (event) => {
  event.preventDefault();
  shownUser = $<HTMLInputElement>("user-id").value.trim();
  $("user-result").textContent = "";
  void attempt(refreshUser, $("user-result"));
});

$("disconnect-all").addEventListener("click", () => {
  const user = shownUser;
  const close = closeWith();
  if (user === undefined || close === undefined) return;
  void attempt(async () => {
    await call("/api/disconnect", { user, ...close });
    $("user-result").textContent = `asked every instance to close ${user}'s connections with ${close.code}`;
    await refreshUser();
  }, $("user-result"));
});

// ---- warnings ------------------------------------------------------------------

function renderWarnings(warnings: Warnings): void {
  $("warning-counts").replaceChildren(
    ...Object.entries(WARNING_LABELS).map(([kind, label]) =>
      el("li", `${label}: ${warnings.totals[kind] ?? 0}`, { "data-kind": kind }),
    ),
  );
  fill(
    "warning-list",
    warnings.recent.map((warning) =>
      row([time(warning.at), warning.node, WARNING_LABELS[warning.kind] ?? warning.kind, warning.detail]),
    ),
  );
  $("warnings-empty").hidden = warnings.recent.length > 0;
}

// ---- the refresh loop ----------------------------------------------------------

async function refresh(): Promise<void> {
  timer = undefined;
  const ok = await attempt(async () => {
    const search = $<HTMLInputElement>("room-search").value.trim();
    const [info, stats, rooms, warnings] = await Promise.all([
      call<Info>("/api/info"),
      call<Stats>(query("/api/stats", { since: charts.since() })),
      call<Rooms>(query("/api/rooms", { search, limit: 20 })),
      call<Warnings>("/api/warnings"),
      refreshRoom(),
      refreshUser(),
    ]);
    showError("");
    $("console").hidden = false;
    $("signout").hidden = false;
    renderInstances(info, stats);
    charts.update(
      stats,
      info.nodes.map((node) => node.id),
    );
    renderRooms(rooms);
    renderWarnings(warnings);
    renderMissing([...stats.missing, ...rooms.missing, ...warnings.missing]);
    $("updated").textContent = `updated ${time(Date.now())}`;
  });
  if (!ok && $("login").hidden === false) return;
  if (!ok) $("error").textContent = `cannot read the cluster: ${$("error").textContent}`;
  timer = window.setTimeout(() => void refresh(), REFRESH_MS);
}

$("room-search").addEventListener("input", () => {
  if (timer === undefined) return;
  window.clearTimeout(timer);
  void refresh();
});

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $<HTMLInputElement>("key");
  storeKey(input.value);
  input.value = "";
  $("login").hidden = true;
  void refresh();
});

$("signout").addEventListener("click", () => {
  forgetKey();
  showLogin("");
});

if (storedKey() === null) showLogin("");
else void refresh();
