import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type MessagePush, ProtocolError } from "crier-protocol";
import { CrierClient } from "./client.js";
import { CrierClientError } from "./errors.js";
import { msgpackCodec } from "./msgpack.js";
import type { WebSocketLike } from "./socket.js";
import { FakeServer } from "./testing/fake-server.js";
import {
  cleanUpAfterEach,
  cleanups,
  connected,
  makeClient,
  nextEvent,
  startServer,
  subscribedReply,
} from "./testing/harness.js";
import { Inbox } from "./testing/inbox.js";
import { MemorySocket } from "./testing/memory-socket.js";

const ROOM = "chat:1";
// A test that waits for something that never comes fails here instead of hanging.
const TEST = { timeout: 5000 };

cleanUpAfterEach();

describe("CrierClient", () => {
  it("sends connect with token, info and name and resolves with the connected reply", TEST, async () => {
    const server = await startServer({ ping: 25 });
    const client = makeClient(server, { token: "jwt-1", info: { color: "red" }, name: "test/1" });
    const seen = nextEvent(client, "connected");
    const [info, connection] = await Promise.all([client.connect(), server.nextConnection()]);
    const connect = await connection.next("connect");
    assert.equal(connect.token, "jwt-1");
    assert.deepEqual(connect.info, { color: "red" });
    assert.equal(connect.name, "test/1");
    assert.equal(typeof connect.id, "number");
    assert.deepEqual(info, { client: "c1", user: "u1", node: "fake", ping: 25 });
    assert.deepEqual(await seen, info);
    assert.equal(client.state, "connected");
    assert.equal(connection.socket.protocol, "crier.v1.json");
  });

  it("settles each command with the reply carrying its id, whatever the reply order", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server);
    const connection = await connected(client, server);
    const first = client.publish(ROOM, { n: 1 });
    const second = client.publish(ROOM, { n: 2 });
    const a = await connection.next("publish");
    const b = await connection.next("publish");
    assert.notEqual(a.id, b.id);
    assert.deepEqual(a.data, { n: 1 });
    connection.send({ op: "ok", id: b.id, offset: 8, epoch: "e1" });
    connection.send({ op: "ok", id: a.id, offset: 7, epoch: "e1" });
    assert.deepEqual(await first, { offset: 7, epoch: "e1" });
    assert.deepEqual(await second, { offset: 8, epoch: "e1" });
  });

  it("presence, history and send resolve with their replies", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server);
    const connection = await connected(client, server);

    const presence = client.presence(ROOM);
    const p = await connection.next("presence");
    const members = [{ user: "u1", client: "c1", info: {} }];
    connection.send({ op: "presence", id: p.id, room: ROOM, members });
    assert.deepEqual(await presence, members);

    const history = client.history(ROOM, { since: { offset: 3, epoch: "e1" }, limit: 2 });
    const h = await connection.next("history");
    assert.deepEqual([h.since, h.limit], [{ offset: 3, epoch: "e1" }, 2]);
    const messages = [{ room: ROOM, data: "x", offset: 4 }];
    connection.send({ op: "history", id: h.id, room: ROOM, offset: 4, epoch: "e1", messages });
    assert.deepEqual(await history, { room: ROOM, offset: 4, epoch: "e1", messages });

    const sent = client.send("u2", { hi: true });
    const s = await connection.next("send");
    assert.deepEqual([s.user, s.data], ["u2", { hi: true }]);
    connection.send({ op: "ok", id: s.id });
    assert.equal(await sent, undefined);
  });

  it("rpc sends method and data (null by default) and resolves with the backend's data", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server);
    const connection = await connected(client, server);
    const call = client.rpc("whoami", { verbose: true });
    const frame = await connection.next("rpc");
    assert.deepEqual([frame.method, frame.data], ["whoami", { verbose: true }]);
    connection.send({ op: "rpc", id: frame.id, data: { user: "u1", teams: ["red"] } });
    assert.deepEqual(await call, { user: "u1", teams: ["red"] });

    const bare = client.rpc("ping");
    const second = await connection.next("rpc");
    assert.equal(second.data, null, "data defaults to null, and is sent");
    connection.send({ op: "rpc", id: second.id, data: "pong" });
    assert.equal(await bare, "pong");
  });

  it("rpc: the backend's error rejects with ProtocolError, a reply of another op with bad_frame", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server);
    const connection = await connected(client, server);
    const refused = client.rpc("nope");
    const frame = await connection.next("rpc");
    connection.send({ op: "error", id: frame.id, code: "bad_request", message: "unknown method nope" });
    await assert.rejects(refused, (error) => {
      assert.ok(error instanceof ProtocolError);
      assert.deepEqual([error.code, error.message], ["bad_request", "unknown method nope"]);
      return true;
    });
    const confused = client.rpc("x");
    connection.send({ op: "ok", id: (await connection.next("rpc")).id });
    await assert.rejects(confused, { code: "bad_frame", message: "'ok' in reply to 'rpc'" });
  });

  it("rpc while reconnecting waits in the queue and is sent on the next connection", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server);
    const first = await connected(client, server);
    const disconnected = nextEvent(client, "disconnected");
    first.close(1012, "restart");
    await disconnected;
    const call = client.rpc("later", 7);
    const second = await server.nextConnection();
    const frame = await second.next("rpc");
    assert.deepEqual(
      second.received.map((f) => f.op),
      ["connect", "rpc"],
    );
    second.send({ op: "rpc", id: frame.id, data: 8 });
    assert.equal(await call, 8);
  });

  it("an error reply rejects the command with a ProtocolError carrying the code", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server);
    const connection = await connected(client, server);
    const publish = client.publish(ROOM, "x");
    const frame = await connection.next("publish");
    connection.send({ op: "error", id: frame.id, code: "forbidden", message: "publish is backend-only in chat" });
    await assert.rejects(publish, (error) => {
      assert.ok(error instanceof ProtocolError);
      assert.equal(error.code, "forbidden");
      assert.equal(error.message, "publish is backend-only in chat");
      return true;
    });
    // An error without id has no command to reject: it is emitted.
    const emitted = nextEvent(client, "error");
    connection.send({ op: "error", code: "rate_limited", message: "slow down" });
    const error = await emitted;
    assert.ok(error instanceof ProtocolError && error.code === "rate_limited");
  });

  it("a command without a reply rejects with a timeout after ackTimeoutMs", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server, { ackTimeoutMs: 150 });
    const connection = await connected(client, server);
    const started = Date.now();
    const publish = client.publish(ROOM, "x");
    await connection.next("publish");
    await assert.rejects(publish, (error) => error instanceof CrierClientError && error.code === "timeout");
    assert.ok(Date.now() - started >= 140, "rejected before ackTimeoutMs");
    assert.equal(client.state, "connected");
  });

  it("answers the server's ping with pong", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server);
    const connection = await connected(client, server);
    connection.send({ op: "ping" });
    assert.deepEqual(await connection.next("pong"), { op: "pong" });
  });

  it("a connection that drops rejects the commands still waiting for a reply", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server);
    const connection = await connected(client, server);
    const publish = client.publish(ROOM, "x");
    await connection.next("publish");
    connection.close(1012, "restart");
    await assert.rejects(publish, (error) => {
      assert.ok(error instanceof CrierClientError);
      assert.equal(error.code, "disconnected");
      assert.equal(error.closeCode, 1012);
      return true;
    });
  });

  it("reconnects after a 1012 close and resubscribes with since; the replay reaches the handler", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server);
    const inbox = new Inbox<MessagePush>();
    const sub = client.subscribe(ROOM, (message) => inbox.push(message));
    const first = await connected(client, server);

    const subscribe1 = await first.next("subscribe");
    assert.equal(subscribe1.since, undefined);
    first.send(subscribedReply(subscribe1, { offset: 5, epoch: "e1" }));
    assert.deepEqual(await sub.ready, { room: ROOM, offset: 5, epoch: "e1", recovered: false });
    first.send({ op: "message", room: ROOM, data: "m6", offset: 6 });
    assert.equal((await inbox.next()).data, "m6");

    const disconnected = nextEvent(client, "disconnected");
    first.close(1012, "restart");
    assert.deepEqual(await disconnected, { code: 1012, reason: "restart", willReconnect: true });
    assert.equal(client.state, "connecting");

    const second = await server.nextConnection();
    await second.next("connect");
    const subscribe2 = await second.next("subscribe");
    assert.deepEqual(subscribe2.since, { offset: 6, epoch: "e1" });
    const resubscribed = new Promise((resolve) => sub.once("resubscribed", resolve));
    second.send(subscribedReply(subscribe2, { offset: 8, epoch: "e1", recovered: true }));
    second.send({ op: "message", room: ROOM, data: "m7", offset: 7 });
    second.send({ op: "message", room: ROOM, data: "m8", offset: 8 });
    assert.deepEqual(await resubscribed, { room: ROOM, offset: 8, epoch: "e1", recovered: true });
    assert.deepEqual([(await inbox.next()).data, (await inbox.next()).data], ["m7", "m8"]);
    assert.deepEqual(sub.position, { offset: 8, epoch: "e1" });
    assert.equal(sub.state, "active");
  });

  it("reconnects after the server is stopped and restarted on the same port", TEST, async () => {
    const server = await FakeServer.start();
    const client = makeClient(server);
    const sub = client.subscribe(ROOM, () => {});
    const first = await connected(client, server);
    const subscribe1 = await first.next("subscribe");
    first.send(subscribedReply(subscribe1, { offset: 1, epoch: "e1" }));
    await sub.ready;

    const disconnected = nextEvent(client, "disconnected");
    await server.stop();
    const drop = await disconnected;
    assert.equal(drop.code, 1006);
    assert.equal(drop.willReconnect, true);
    // While the server is down, attempts fail and are retried.
    const failedAttempt = await nextEvent(client, "disconnected");
    assert.equal(failedAttempt.willReconnect, true);
    assert.equal(client.state, "connecting");

    const reconnected = nextEvent(client, "connected");
    const restarted = await startServer({ port: server.port });
    const second = await restarted.nextConnection();
    await reconnected;
    const subscribe2 = await second.next("subscribe");
    assert.deepEqual(subscribe2.since, { offset: 1, epoch: "e1" });
    assert.equal(client.state, "connected");
  });

  it("does not reconnect after 4003 and fails later commands at once", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server);
    const connection = await connected(client, server);
    const disconnected = nextEvent(client, "disconnected");
    connection.close(4003, "unauthorized");
    assert.deepEqual(await disconnected, { code: 4003, reason: "unauthorized", willReconnect: false });
    // A scheduled reconnect would show as "connecting".
    assert.equal(client.state, "disconnected");
    await assert.rejects(client.publish(ROOM, "x"), { code: "not_connected" });
    assert.equal(server.connections.length, 1);
  });

  it("connect() rejects with the server's error when the token is refused", TEST, async () => {
    const server = await startServer({ autoConnect: false });
    const client = makeClient(server, { token: "bad" });
    const connecting = client.connect();
    const connection = await server.nextConnection();
    const connect = await connection.next("connect");
    connection.send({ op: "error", id: connect.id, code: "unauthorized", message: "invalid token" });
    connection.close(4003, "unauthorized");
    await assert.rejects(connecting, (error) => error instanceof ProtocolError && error.code === "unauthorized");
    assert.equal(client.state, "disconnected");
  });

  it(
    "a refused connect the server does not close is given up after ackTimeoutMs, without reconnecting",
    TEST,
    async () => {
      const server = await startServer({ autoConnect: false });
      const client = makeClient(server, { ackTimeoutMs: 150 });
      const connecting = client.connect();
      const disconnected = nextEvent(client, "disconnected");
      const connection = await server.nextConnection();
      const connect = await connection.next("connect");
      connection.send({ op: "error", id: connect.id, code: "forbidden", message: "origin not allowed" });
      await assert.rejects(connecting, (error) => error instanceof ProtocolError && error.code === "forbidden");
      const drop = await disconnected;
      assert.equal(drop.code, 1006);
      assert.equal(drop.willReconnect, false);
      assert.match(drop.reason, /connect refused: forbidden/);
      assert.equal(client.state, "disconnected");
      assert.equal((await connection.closed).code, 1006);
    },
  );

  it("after 4005 (token expired) asks the token function for a new token and reconnects", TEST, async () => {
    const server = await startServer();
    let issued = 0;
    const client = makeClient(server, { token: async () => `jwt-${++issued}` });
    const [, first] = await Promise.all([client.connect(), server.nextConnection()]);
    assert.equal((await first.next("connect")).token, "jwt-1");
    const disconnected = nextEvent(client, "disconnected");
    first.close(4005, "token expired");
    assert.deepEqual(await disconnected, { code: 4005, reason: "token expired", willReconnect: true });
    const second = await server.nextConnection();
    assert.equal((await second.next("connect")).token, "jwt-2");
  });

  it("with a fixed token, 4005 is final", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server, { token: "jwt-static" });
    const connection = await connected(client, server);
    const disconnected = nextEvent(client, "disconnected");
    connection.close(4005, "token expired");
    assert.equal((await disconnected).willReconnect, false);
    assert.equal(client.state, "disconnected");
  });

  it("calls a silent connection dead after ping + margin and reconnects", TEST, async () => {
    const server = await startServer({ ping: 0.05 });
    const client = makeClient(server, { pingMarginMs: 50 });
    await connected(client, server);
    const disconnected = await nextEvent(client, "disconnected");
    assert.equal(disconnected.code, 1006);
    assert.match(disconnected.reason, /nothing heard from the server/);
    assert.equal(disconnected.willReconnect, true);
    const second = await server.nextConnection();
    await second.next("connect");
  });

  it("frames keep a connection alive past ping + margin", TEST, async () => {
    // A 250 ms silence limit: wide enough that a busy machine's event-loop stall is not silence.
    const server = await startServer({ ping: 0.1 });
    const client = makeClient(server, { pingMarginMs: 150 });
    const connection = await connected(client, server);
    let drops = 0;
    client.on("disconnected", () => drops++);
    // Ping-pong round trips for three times the silence limit: the watchdog fires
    // several times meanwhile, and must find the connection alive each time.
    const started = Date.now();
    while (Date.now() - started < 750) {
      connection.send({ op: "ping" });
      await connection.next("pong");
    }
    assert.equal(drops, 0);
    assert.equal(client.state, "connected");
  });

  it("queues commands issued while reconnecting and sends them after the resubscribes", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server, { maxQueuedCommands: 2 });
    const sub = client.subscribe(ROOM, () => {});
    const first = await connected(client, server);
    first.send(subscribedReply(await first.next("subscribe"), { offset: 3, epoch: "e1" }));
    await sub.ready;

    const disconnected = nextEvent(client, "disconnected");
    first.close(4500, "shutting down");
    await disconnected;
    const publish = client.publish(ROOM, "queued-1");
    const send = client.send("u2", "queued-2");
    await assert.rejects(client.publish(ROOM, "one too many"), { code: "queue_full" });

    const second = await server.nextConnection();
    const subscribe = await second.next("subscribe");
    const queuedPublish = await second.next("publish");
    const queuedSend = await second.next("send");
    assert.deepEqual(
      second.received.map((frame) => frame.op),
      ["connect", "subscribe", "publish", "send"],
    );
    assert.deepEqual(subscribe.since, { offset: 3, epoch: "e1" });
    second.send({ op: "ok", id: queuedPublish.id, offset: 4, epoch: "e1" });
    second.send({ op: "ok", id: queuedSend.id });
    assert.deepEqual(await publish, { offset: 4, epoch: "e1" });
    await send;
  });

  it("commands before connect() reject at once with not_connected", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server);
    await assert.rejects(client.publish(ROOM, "x"), (error) => {
      assert.ok(error instanceof CrierClientError);
      assert.equal(error.code, "not_connected");
      return true;
    });
    await assert.rejects(client.publish("bad room!", "x"), { code: "bad_request" });
  });

  it("subscribe before connect() is sent once connected; unsubscribe stops delivery", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server);
    const got: unknown[] = [];
    const sub = client.subscribe(ROOM, (message) => got.push(message.data), { since: { offset: 2, epoch: "e9" } });
    assert.throws(() => client.subscribe(ROOM, () => {}), { code: "already_subscribed" });
    const connection = await connected(client, server);
    const subscribe = await connection.next("subscribe");
    assert.deepEqual(subscribe.since, { offset: 2, epoch: "e9" });
    connection.send(subscribedReply(subscribe, { offset: 2, epoch: "e9", recovered: true }));
    assert.equal((await sub.ready).recovered, true);

    const everything = new Inbox<MessagePush>();
    client.on("message", (message) => everything.push(message));
    connection.send({ op: "message", room: ROOM, data: "before", offset: 3 });
    await everything.next();

    const unsubscribed = sub.unsubscribe();
    const unsubscribe = await connection.next("unsubscribe");
    assert.equal(unsubscribe.room, ROOM);
    connection.send({ op: "message", room: ROOM, data: "after", offset: 4 });
    await everything.next();
    connection.send({ op: "ok", id: unsubscribe.id });
    await unsubscribed;
    assert.deepEqual(got, ["before"]);
    assert.equal(sub.state, "unsubscribed");
    assert.equal(client.getSubscription(ROOM), undefined);
  });

  it("a subscribe the server refuses rejects ready and is not resent after a reconnect", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server);
    const sub = client.subscribe("secret:1", () => {});
    const first = await connected(client, server);
    const subscribe = await first.next("subscribe");
    first.send({ op: "error", id: subscribe.id, code: "forbidden", message: "not in your rooms claim" });
    await assert.rejects(sub.ready, (error) => error instanceof ProtocolError && error.code === "forbidden");
    assert.equal(sub.state, "failed");

    first.close(1012, "restart");
    const second = await server.nextConnection();
    await second.next("connect");
    second.send({ op: "ping" });
    await second.next("pong");
    assert.deepEqual(
      second.received.map((frame) => frame.op),
      ["connect", "pong"],
    );
  });

  it("passes direct, join and leave pushes to their events", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server);
    const connection = await connected(client, server);
    const direct = nextEvent(client, "direct");
    const join = nextEvent(client, "join");
    connection.send({ op: "direct", data: { text: "hi" }, from: "u9" });
    connection.send({ op: "join", room: ROOM, member: { user: "u9", client: "c9" } });
    assert.deepEqual(await direct, { op: "direct", data: { text: "hi" }, from: "u9" });
    assert.equal((await join).member.user, "u9");
  });

  it("close() is idempotent, fails what waits, ends subscriptions and cancels the reconnect timer", TEST, async () => {
    // Ref'd timers only: the client's watchdogs are unref'd, its reconnect timer is not.
    const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length;
    const server = await FakeServer.start();
    const client = makeClient(server, { minReconnectDelayMs: 60_000, maxReconnectDelayMs: 60_000 });
    const sub = client.subscribe(ROOM, () => {});
    await connected(client, server);

    const disconnected = nextEvent(client, "disconnected");
    await server.stop();
    assert.equal((await disconnected).willReconnect, true);
    const queued = client.publish(ROOM, "while down");

    const closedEvents: number[] = [];
    client.on("disconnected", (info) => closedEvents.push(info.code));
    const before = timers();
    client.close();
    client.close();
    assert.equal(timers(), before - 1, "close() must cancel the pending reconnect");
    assert.equal(client.state, "disconnected");
    assert.deepEqual(closedEvents, [1000]);
    await assert.rejects(queued, { code: "closed" });
    await assert.rejects(sub.ready, { code: "closed" });
    assert.equal(sub.state, "unsubscribed");
  });

  it("a Node process exits on its own once close() is called, even while reconnecting", TEST, async () => {
    const here = import.meta.dirname;
    const script = `
      import { WebSocket } from "ws";
      import { CrierClient } from ${JSON.stringify(`${here}/client.ts`)};
      import { FakeServer } from ${JSON.stringify(`${here}/testing/fake-server.ts`)};
      const server = await FakeServer.start();
      const client = new CrierClient(server.url, { WebSocket, minReconnectDelayMs: 60000, maxReconnectDelayMs: 60000 });
      client.subscribe("chat:1", () => {});
      await client.connect();
      const dropped = new Promise((resolve) => client.once("disconnected", resolve));
      await server.stop();
      await dropped;
      client.close();
      console.log("closed while " + client.state);
    `;
    const { spawn } = await import("node:child_process");
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk) => {
      output += chunk;
    });
    child.stderr.on("data", (chunk) => {
      output += chunk;
    });
    cleanups.push(() => child.kill("SIGKILL"));
    // Without close(), the 60 s reconnect timer would keep the child alive past the test timeout.
    const code = await new Promise((resolve) => child.once("exit", resolve));
    assert.equal(code, 0, output);
    assert.match(output, /closed while disconnected/);
  });

  it("connect() after close() starts over", TEST, async () => {
    const server = await startServer();
    const client = makeClient(server);
    await connected(client, server);
    client.close();
    const second = await connected(client, server);
    assert.equal(client.state, "connected");
    assert.equal(second.received[0]?.op, "connect");
  });
});

describe("CrierClient on an in-memory socket", () => {
  it("a MessagePack client gives up on a server that chose no subprotocol (it would speak JSON)", TEST, async () => {
    // A server without crier.v1.msgpack picks no subprotocol. Not a MemorySocket: those are listed for other tests.
    class NoSubprotocolSocket implements WebSocketLike {
      readonly protocol = "";
      onopen: ((event: unknown) => void) | null = null;
      onmessage = null;
      onclose = null;
      onerror = null;
      constructor() {
        queueMicrotask(() => this.onopen?.({}));
      }
      send(): void {
        throw new Error("nothing may be written before the subprotocol is checked");
      }
      close(): void {}
    }
    const client = new CrierClient("ws://memory/ws", { WebSocket: NoSubprotocolSocket, codec: msgpackCodec });
    cleanups.push(() => client.close());
    await assert.rejects(client.connect(), (error: unknown) => {
      assert.ok(error instanceof CrierClientError);
      assert.equal(error.code, "unsupported_protocol");
      assert.match(error.message, /chose subprotocol 'none'; this client was set up for crier\.v1\.msgpack/);
      return true;
    });
  });

  it("a write that fails while flushing the queue keeps the rest queued for the next connection", TEST, async () => {
    const client = new CrierClient("ws://memory/ws", {
      WebSocket: MemorySocket,
      minReconnectDelayMs: 1,
      maxReconnectDelayMs: 2,
    });
    cleanups.push(() => client.close());
    const connectedTo = async (socket: MemorySocket) => {
      const connect = await socket.next("connect");
      socket.receive({ op: "connected", id: connect.id, client: "c", user: "u", node: "n", ping: 25 });
    };

    const connecting = client.connect();
    const first = await MemorySocket.created.next();
    await connectedTo(first);
    await connecting;
    first.serverClose(1012, "restart");

    const results = [1, 2, 3].map((n) =>
      client.publish(ROOM, n).then(
        (ok) => ({ n, ok }),
        (error: CrierClientError) => ({ n, error: error.code }),
      ),
    );
    const second = await MemorySocket.created.next();
    second.failAfterWrites = 2; // `connect`, then the first queued publish; the second write throws
    await connectedTo(second);

    const third = await MemorySocket.created.next();
    await connectedTo(third);
    const publish = await third.next("publish");
    assert.equal(publish.data, 3);
    third.receive({ op: "ok", id: publish.id });
    assert.deepEqual(await Promise.all(results), [
      { n: 1, error: "disconnected" },
      { n: 2, error: "disconnected" },
      { n: 3, ok: {} },
    ]);
    assert.equal(client.state, "connected");
  });
});
