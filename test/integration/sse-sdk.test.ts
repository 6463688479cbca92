// The SDK's HTTP fallback in Node (20 has no EventSource: the fetch-based
// reader) against a real crier process: a WebSocket URL whose path refuses
// upgrades makes the client fall back to SSE + emulation, with the same API,
// the same reconnect and the same recovery from history.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { WebSocket } from "ws";
import { type ClientOptions, CrierClient, type MessagePush } from "../../packages/client/src/index.js";
import { SseSocket } from "../../packages/client/src/sse.js";
import { Inbox } from "../../packages/client/src/testing/inbox.js";
import { api, type ConfigFile, type CrierInstance, startCrier, writeConfig } from "../support/crier.js";
import { TestClient } from "../support/ws-client.js";

/** Deadline for what a test awaits, so a missing event fails instead of hanging. */
const TEST = { timeout: 20_000 };

describe("SDK fallback to SSE against a real server", () => {
  let config: ConfigFile;
  let server: CrierInstance;
  const clients: CrierClient[] = [];

  function client(url: string, options: ClientOptions = {}): CrierClient {
    const created = new CrierClient(url, { WebSocket, sse: SseSocket, minReconnectDelayMs: 20, ...options });
    clients.push(created);
    return created;
  }

  before(async () => {
    config = await writeConfig({ namespaces: { chat: { history: { size: 100, ttl: "10m" } } } });
    server = await startCrier({ args: ["--config", config.path] });
  });
  afterEach(() => {
    for (const created of clients.splice(0)) created.close();
  });
  after(async () => {
    await server.stop();
    await config.remove();
  });

  test("a path that refuses upgrades: the client falls back to SSE and works the same", TEST, async () => {
    const blocked = server.url.replace(/\/ws$/, "/blocked");
    const sdk = client(blocked);
    assert.equal(sdk.transport, "websocket", "it tries the WebSocket first");
    const info = await sdk.connect();
    assert.equal(sdk.transport, "sse");
    assert.equal(sdk.state, "connected");

    const inbox = new Inbox<MessagePush>();
    const subscription = sdk.subscribe("chat:fallback", (message) => inbox.push(message));
    await subscription.ready;
    const peer = await TestClient.connect(server.url);
    await peer.call({ op: "subscribe", room: "chat:fallback" });

    await api(server, "/api/publish", { room: "chat:fallback", data: "from the backend" });
    assert.equal((await inbox.next()).data, "from the backend");
    const published = await sdk.publish("chat:fallback", { from: "sse" });
    assert.equal(typeof published.offset, "number", "publish replies come back on the stream");
    await peer.seen((f) => f.op === "message" && JSON.stringify(f.data) === '{"from":"sse"}', "the SDK's publication");
    assert.deepEqual((await inbox.next()).data, { from: "sse" });
    const history = await sdk.history("chat:fallback");
    assert.deepEqual(
      history.messages.map((message) => message.data),
      ["from the backend", { from: "sse" }],
    );
    assert.equal(info.node, server.nodeId);
    peer.close();
  });

  test("after the server ends the session, it reconnects over SSE and recovers what it missed", TEST, async () => {
    const sdk = client(server.url.replace(/\/ws$/, "/blocked"));
    const first = await sdk.connect();
    const inbox = new Inbox<MessagePush>();
    const subscription = sdk.subscribe("chat:recover", (message) => inbox.push(message));
    await subscription.ready;
    await api(server, "/api/publish", { room: "chat:recover", data: 1 });
    assert.equal((await inbox.next()).data, 1);

    const disconnected = new Promise<{ code: number; willReconnect: boolean }>((resolve) =>
      sdk.once("disconnected", resolve),
    );
    const reconnected = new Promise<{ client: string }>((resolve) => {
      sdk.on("disconnected", () => sdk.once("connected", resolve));
    });
    await api(server, "/api/disconnect", { client: first.client, code: 4500, reason: "go away for a moment" });
    const closed = await disconnected;
    assert.equal(closed.code, 4500, "the close event's code reaches the app");
    assert.equal(closed.willReconnect, true);
    // Published while the client is away: recovered with `since` after the reconnect.
    await api(server, "/api/publish", { room: "chat:recover", data: 2 });
    const second = await reconnected;
    assert.notEqual(second.client, first.client);
    assert.equal(sdk.transport, "sse");
    assert.equal((await inbox.next()).data, 2);
  });

  test('transports: ["sse"] needs no WebSocket at all; a terminal close stops it', TEST, async () => {
    const sdk = new CrierClient(server.url, { sse: SseSocket, transports: ["sse"] });
    clients.push(sdk);
    const info = await sdk.connect();
    assert.equal(sdk.transport, "sse");
    const disconnected = new Promise<{ code: number; willReconnect: boolean }>((resolve) =>
      sdk.once("disconnected", resolve),
    );
    await api(server, "/api/disconnect", { client: info.client, code: 4004, reason: "banned" });
    assert.deepEqual(await disconnected, { code: 4004, reason: "banned", willReconnect: false });
    assert.equal(sdk.state, "disconnected");
  });

  test("where the WebSocket opens, the client stays on it", TEST, async () => {
    const sdk = client(server.url);
    await sdk.connect();
    assert.equal(sdk.transport, "websocket");
  });

  test("options: 'sse' in transports without the SSE socket, or with MessagePack, is refused at once", () => {
    assert.throws(() => new CrierClient(server.url, { WebSocket, transports: ["sse"] }), /crier-client\/sse/);
    assert.throws(() => new CrierClient(server.url, { WebSocket, transports: [] }), /option 'transports'/);
  });
});
