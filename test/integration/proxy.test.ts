// The backend proxy (docs/backend.md) with real crier processes and real HTTP
// backends: the example app with cookie sessions (examples/backend), and a
// programmable one for the ways a backend fails (slow, not 200, unreadable).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { CloseCode, type ServerFrame } from "crier-protocol";
import { WebSocket } from "ws";
import { type ExampleBackend, startExampleBackend } from "../../examples/backend/backend.js";
import { CrierClient, type MessagePush, ProtocolError, type Subscription } from "../../packages/client/src/index.js";
import { TestBackend } from "../support/backend.js";
import { Collector } from "../support/collector.js";
import { api, type ConfigFile, type CrierInstance, startCrier, writeConfig } from "../support/crier.js";
import { dataAfterLeaving } from "../support/sdk-barrier.js";
import { JWT_SECRET, token } from "../support/tokens.js";
import { TestClient } from "../support/ws-client.js";

/** Opens a connection with `headers` on the upgrade (a browser's cookies) and sends connect. */
async function connectWith(
  url: string,
  headers: Record<string, string>,
  connect: Record<string, unknown> = {},
): Promise<{ client: TestClient; reply: ServerFrame }> {
  const client = await TestClient.open(url, { headers });
  const reply = await client.call({ op: "connect", ...connect });
  return { client, reply };
}

/** An SDK client whose WebSocket upgrades carry `cookie`, as a browser's would. */
function sdkClient(url: string, cookie?: string): CrierClient {
  class CookieWebSocket extends WebSocket {
    constructor(address: string, protocols?: string | string[]) {
      super(address, protocols, { headers: cookie === undefined ? {} : { Cookie: cookie } });
    }
  }
  return new CrierClient(url, {
    WebSocket: CookieWebSocket,
    minReconnectDelayMs: 20,
    maxReconnectDelayMs: 100,
  });
}

async function metrics(crier: CrierInstance): Promise<string> {
  return (await fetch(`${crier.httpUrl}/metrics`)).text();
}

function counted(text: string, proxy: string, outcome: string): number {
  const line = text
    .split("\n")
    .find(
      (l) =>
        l.startsWith("crier_proxy_calls_total{") &&
        l.includes(`proxy="${proxy}"`) &&
        l.includes(`outcome="${outcome}"`),
    );
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}

describe("backend proxy: the example app with cookie sessions", () => {
  let app: ExampleBackend;
  let config: ConfigFile;
  let crier: CrierInstance;

  before(async () => {
    app = await startExampleBackend();
    config = await writeConfig({
      allowAnonymous: false,
      jwt: { secret: JWT_SECRET },
      proxy: {
        connect: `${app.url}/crier/connect`,
        refresh: `${app.url}/crier/refresh`,
        subscribe: `${app.url}/crier/subscribe`,
        rpc: `${app.url}/crier/rpc`,
        headers: ["Cookie"],
      },
      namespaces: {
        team: { proxy: { publish: `${app.url}/crier/publish` } },
        notify: { publish: "none" },
      },
    });
    crier = await startCrier({ args: ["--config", config.path] });
  });

  after(async () => {
    await crier?.stop();
    await config?.remove();
    await app?.close();
  });

  test("the session cookie is the user; without one the connect is refused and closed with 4003", async () => {
    const { client, reply } = await connectWith(crier.url, { Cookie: app.login("alice") });
    assert.equal(reply.op, "connected");
    assert.equal(reply.op === "connected" ? reply.user : "", "alice");
    client.close();

    const refused = await connectWith(crier.url, {});
    assert.deepEqual(refused.reply.op === "error" ? [refused.reply.code, refused.reply.message] : refused.reply, [
      "unauthorized",
      "log in first",
    ]);
    assert.equal((await refused.client.waitClosed()).code, CloseCode.Unauthorized);
  });

  test("a disconnect answer closes with the backend's code (no reply: the connection ends)", async () => {
    const client = await TestClient.open(crier.url, { headers: { Cookie: app.login("mallory") } });
    client.send({ op: "connect", id: 1 });
    assert.deepEqual(await client.waitClosed(), { code: 4403, reason: "banned" });
    assert.deepEqual(client.frames, []);
  });

  test("server-side subscriptions: the connect proxy's rooms come as subscribed pushes, and deliver", async () => {
    const { client } = await connectWith(crier.url, { Cookie: app.login("alice") });
    const pushed = await client.seen((f) => f.op === "subscribed" && f.room === "notify:alice", "notify:alice");
    assert.equal("id" in pushed, false, "a push, not a reply");
    assert.equal((await api(crier, "/api/publish", { room: "notify:alice", data: { n: 1 } })).status, 200);
    const message = await client.seen((f) => f.op === "message" && f.room === "notify:alice", "the notification");
    assert.deepEqual(message.op === "message" ? message.data : undefined, { n: 1 });
    client.close();
  });

  test("subscribe: the backend allows a member's team room and forbids another's", async () => {
    const { client } = await connectWith(crier.url, { Cookie: app.login("alice") });
    assert.equal((await client.call({ op: "subscribe", room: "team:red" })).op, "subscribed");
    const refused = await client.call({ op: "subscribe", room: "team:blue" });
    assert.deepEqual(refused.op === "error" ? [refused.code, refused.message] : refused, [
      "forbidden",
      "alice is not in team blue",
    ]);
    client.close();
  });

  test("publish: the namespace's publish proxy replaces the data", async () => {
    const { client } = await connectWith(crier.url, { Cookie: app.login("alice") });
    await client.call({ op: "subscribe", room: "team:red" });
    assert.equal((await client.call({ op: "publish", room: "team:red", data: { text: "hi", by: "eve" } })).op, "ok");
    const message = await client.seen((f) => f.op === "message" && f.room === "team:red", "the publication");
    assert.deepEqual(message.op === "message" ? message.data : undefined, { text: "hi", by: "alice" });
    client.close();
  });

  test("rpc: a round trip, and the backend's error for an unknown method", async () => {
    const { client } = await connectWith(crier.url, { Cookie: app.login("alice") });
    const reply = await client.call({ op: "rpc", method: "whoami", data: null });
    assert.deepEqual(reply.op === "rpc" ? reply.data : reply, { user: "alice", teams: ["red"] });
    const unknown = await client.call({ op: "rpc", method: "nope", data: {} });
    assert.deepEqual(unknown.op === "error" ? unknown.code : unknown, "bad_request");
    client.close();
  });

  test("a valid token skips the connect proxy; its subs claim subscribes on the server's side", async () => {
    const jwt = await token({ sub: "dora", subs: ["notify:dora"] });
    const { client, reply } = await connectWith(crier.url, {}, { token: jwt });
    assert.equal(reply.op === "connected" ? reply.user : reply.op, "dora");
    await client.seen((f) => f.op === "subscribed" && f.room === "notify:dora", "the subs claim's room");
    client.close();
  });

  test("the SDK: rpc resolves with the backend's data, and rejects with its error", async () => {
    const client = sdkClient(crier.url, app.login("alice"));
    try {
      await client.connect();
      assert.deepEqual(await client.rpc("whoami"), { user: "alice", teams: ["red"] });
      await assert.rejects(
        client.rpc("nope", {}),
        (error) => error instanceof ProtocolError && error.code === "bad_request",
      );
    } finally {
      client.close();
    }
  });

  test("the SDK: the connect proxy's rooms arrive as a Subscription, which unsubscribe() ends", async () => {
    const client = sdkClient(crier.url, app.login("alice"));
    const announced = new Collector<Subscription>();
    client.on("subscription", (subscription) => announced.push(subscription));
    const got = new Collector<MessagePush>();
    client.on("message", (message) => got.push(message));
    try {
      await client.connect();
      await announced.waitFor(1);
      const notify = announced.items[0];
      assert.equal(notify?.room, "notify:alice");
      assert.equal(client.getSubscription("notify:alice"), notify);
      assert.equal((await notify?.ready)?.room, "notify:alice");
      assert.equal((await api(crier, "/api/publish", { room: "notify:alice", data: "hello" })).status, 200);
      await got.waitFor(1);

      assert.ok(notify !== undefined);
      const publish = (room: string, data: string) => api(crier, "/api/publish", { room, data });
      assert.deepEqual(await dataAfterLeaving(client, notify, "team:red", publish, got), ["hello", "barrier"]);
      assert.equal(notify.state, "unsubscribed");
    } finally {
      client.close();
    }
  });

  test("/metrics counts the calls by proxy and outcome", async () => {
    const text = await metrics(crier);
    assert.ok(counted(text, "connect", "result") >= 1, text);
    assert.ok(counted(text, "connect", "error") >= 1, text);
    assert.ok(counted(text, "subscribe", "error") >= 1, text);
    assert.match(text, /crier_proxy_duration_seconds_count\{[^}]*proxy="rpc"[^}]*\} [1-9]/);
  });
});

describe("backend proxy: a backend that fails, is slow or renews", () => {
  const backend = new TestBackend();
  let config: ConfigFile;
  let crier: CrierInstance;
  const connectResult =
    (user: string, extra: Record<string, unknown> = {}) =>
    () => ({
      json: { result: { user, ...extra } },
    });

  before(async () => {
    await backend.start();
    config = await writeConfig({
      allowAnonymous: false,
      proxy: {
        connect: `${backend.url}/connect`,
        refresh: `${backend.url}/refresh`,
        subscribe: `${backend.url}/subscribe`,
        timeout: "300ms",
      },
      namespaces: { open: { proxy: { subscribe: `${backend.url}/open-subscribe` } } },
    });
    crier = await startCrier({ args: ["--config", config.path] });
  });

  after(async () => {
    await crier?.stop();
    await config?.remove();
    await backend.close();
  });

  test("a timeout, a non-200 and an unreadable answer fail closed: unavailable, the connect closed", async () => {
    for (const reply of [
      { delayMs: 2000, json: { result: { user: "u" } } },
      { status: 500 },
      { raw: "{}" },
      { raw: "not json" },
    ]) {
      backend.on("/connect", () => reply);
      const { client, reply: answer } = await connectWith(crier.url, {});
      assert.equal(answer.op === "error" ? answer.code : answer.op, "unavailable", JSON.stringify(reply));
      assert.equal((await client.waitClosed()).code, CloseCode.ServerError);
    }
    const text = await metrics(crier);
    for (const outcome of ["timeout", "status", "invalid"]) assert.ok(counted(text, "connect", outcome) >= 1, outcome);
  });

  test("per namespace: the namespace's own subscribe proxy decides its rooms, the top-level one the rest", async () => {
    backend.on("/connect", connectResult("ann"));
    backend.on("/subscribe", () => ({ json: { result: {} } }));
    backend.on("/open-subscribe", () => ({ json: { error: { code: "forbidden", message: "closed today" } } }));
    const { client } = await connectWith(crier.url, {});
    assert.equal((await client.call({ op: "subscribe", room: "lobby" })).op, "subscribed");
    const refused = await client.call({ op: "subscribe", room: "open:hall" });
    assert.deepEqual(refused.op === "error" ? [refused.code, refused.message] : refused, ["forbidden", "closed today"]);
    const call = await backend.waitFor((c) => c.path === "/open-subscribe");
    assert.deepEqual(call.body, { client: call.body.client, user: "ann", room: "open:hall" });
    client.close();
  });

  test("a slow subscribe proxy holds only the connection that waits on it", async () => {
    backend.on("/connect", connectResult("ann"));
    backend.on("/subscribe", (call) =>
      call.body.room === "slow" ? { delayMs: 250, json: { result: {} } } : { json: { result: {} } },
    );
    const waiting = (await connectWith(crier.url, {})).client;
    const busy = (await connectWith(crier.url, {})).client;
    await busy.call({ op: "subscribe", room: "busy" });
    const slow = waiting.call({ op: "subscribe", room: "slow" });
    await backend.waitFor((c) => c.path === "/subscribe" && c.body.room === "slow");
    // While the backend sits on that call, the other connection publishes and receives.
    for (let n = 1; n <= 5; n++) {
      assert.equal((await busy.call({ op: "publish", room: "busy", data: n })).op, "ok");
      await busy.seen((f) => f.op === "message" && f.data === n, `message ${n}`);
    }
    assert.equal(
      waiting.frames.some((f) => f.op === "subscribed"),
      false,
      "the slow subscribe is still waiting",
    );
    assert.equal((await slow).op, "subscribed");
    waiting.close();
    busy.close();
  });

  test("expireAt: the refresh proxy renews it; when it stops renewing, the connection closes with 4005", async () => {
    const soon = (): number => Math.floor(Date.now() / 1000) + 1;
    backend.on("/connect", () => ({ json: { result: { user: "rita", expireAt: soon() } } }));
    backend.on("/refresh", () => ({ json: { result: { expireAt: soon() + 1 } } }));
    const before = backend.count("/refresh");
    const { client } = await connectWith(crier.url, {});
    const renewal = await backend.waitFor((c) => c.path === "/refresh", before);
    assert.equal(renewal.body.user, "rita");
    // Renewed: the connection still serves commands after its first expiry.
    assert.equal((await client.call({ op: "subscribe", room: "after-renewal" })).op, "subscribed");
    backend.on("/refresh", () => ({ json: { error: { code: "unauthorized", message: "session ended" } } }));
    const closed = await client.waitClosed(10_000);
    assert.equal(closed.code, CloseCode.TokenExpired);
  });

  test("without an rpc proxy, rpc is a bad_request", async () => {
    backend.on("/connect", connectResult("ann"));
    const { client } = await connectWith(crier.url, {});
    const reply = await client.call({ op: "rpc", method: "x", data: 1 });
    assert.deepEqual(reply.op === "error" ? reply.code : reply, "bad_request");
    client.close();
  });
});

describe("backend proxy and the SDK: the connect proxy's rooms across a reconnect", () => {
  const backend = new TestBackend();
  let config: ConfigFile;
  let crier: CrierInstance;

  before(async () => {
    await backend.start();
    config = await writeConfig({
      allowAnonymous: false,
      // Long enough for the test to publish while it holds the backend's answer.
      proxy: { connect: `${backend.url}/connect`, timeout: "10s" },
      namespaces: { notify: { publish: "none", history: { size: 100, ttl: "10m" } } },
    });
    crier = await startCrier({ args: ["--config", config.path] });
  });

  after(async () => {
    await crier?.stop();
    await config?.remove();
    await backend.close();
  });

  test("resumed from where the client was: every message once, in order, recovered", async () => {
    const room = "notify:ivy";
    let hold: Promise<void> = Promise.resolve();
    backend.on("/connect", async () => {
      await hold;
      return { json: { result: { user: "ivy", rooms: [room] } } };
    });
    const client = sdkClient(crier.url);
    const announced = new Collector<Subscription>();
    client.on("subscription", (subscription) => announced.push(subscription));
    const errors: Error[] = [];
    client.on("error", (error) => errors.push(error));
    const got = new Collector<MessagePush>((items) => JSON.stringify(items.map((m) => m.data)));
    try {
      await client.connect();
      const notify = client.getSubscription(room);
      assert.ok(notify !== undefined);
      notify.on("message", (message) => got.push(message));
      await notify.ready;
      await api(crier, "/api/publish", { room, data: 1 });
      await got.waitFor(1);

      let release: () => void = () => {};
      hold = new Promise((resolve) => {
        release = resolve;
      });
      const calls = backend.count("/connect");
      const resubscribed = new Promise<{ recovered: boolean }>((resolve) => notify.once("resubscribed", resolve));
      assert.equal((await api(crier, "/api/disconnect", { user: "ivy", code: 4500 })).status, 200);
      // The client is back at the connect proxy, which the test holds while more is published.
      await backend.waitFor((c) => c.path === "/connect", calls);
      for (const data of [2, 3]) await api(crier, "/api/publish", { room, data });
      release();
      assert.equal((await resubscribed).recovered, true);
      await api(crier, "/api/publish", { room, data: 4 });
      await got.waitFor(4);
      assert.deepEqual(
        got.items.map((message) => message.data),
        [1, 2, 3, 4],
      );
      assert.deepEqual(announced.items, [notify], "the same Subscription, announced once");
      assert.deepEqual(errors, []);
    } finally {
      client.close();
    }
  });
});
