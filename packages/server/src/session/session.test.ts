// One instance, spoken to over real WebSockets exactly as docs/protocol.md says:
// every op, every error code and every close code that applies to one instance.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startNode, type TestNode } from "../../../../test/support/node.js";
import { JWT_SECRET, token } from "../../../../test/support/tokens.js";
import { TestClient } from "../../../../test/support/ws-client.js";

describe("handshake", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({ timeouts: { connect: 0.3 } });
  });
  after(() => server.close());

  test("connect gets connected with client id, user, node and ping interval", async () => {
    const client = await TestClient.open(server.url);
    const reply = await client.call({ op: "connect", name: "test/1" });
    assert.equal(reply.op, "connected");
    if (reply.op !== "connected") return;
    assert.match(reply.client, /^[0-9a-f-]{36}$/);
    assert.equal(reply.user, "");
    assert.equal(reply.node, server.node.nodeId);
    assert.equal(reply.ping, 25);
    client.close();
  });

  test("connect without id still gets connected", async () => {
    const client = await TestClient.open(server.url);
    client.send({ op: "connect" });
    const reply = await client.next("connected");
    assert.equal(reply.op, "connected");
    client.close();
  });

  test("the subprotocol crier.v1.json is negotiated when offered", async () => {
    const client = await TestClient.open(server.url, { protocols: ["crier.v1.json"] });
    assert.equal(client.ws.protocol, "crier.v1.json");
    client.close();
  });

  test("an unknown subprotocol is refused at upgrade", async () => {
    await assert.rejects(TestClient.open(server.url, { protocols: ["mqtt"] }), /HTTP 400/);
  });

  test("a first frame other than connect closes with 4001", async () => {
    const client = await TestClient.open(server.url);
    client.send({ op: "subscribe", room: "a" });
    assert.equal((await client.waitClosed()).code, 4001);
  });

  test("no connect within the connect timeout closes with 4001", async () => {
    const client = await TestClient.open(server.url);
    const closed = await client.waitClosed(3000);
    assert.equal(closed.code, 4001);
    assert.match(closed.reason, /connect timeout/);
  });

  test("a connect with a bad field gets bad_request and may be retried", async () => {
    const client = await TestClient.open(server.url);
    const error = await client.call({ op: "connect", info: "not an object" });
    assert.deepEqual([error.op, error.op === "error" && error.code], ["error", "bad_request"]);
    const reply = await client.call({ op: "connect" });
    assert.equal(reply.op, "connected");
    client.close();
  });

  test("a second connect gets bad_request", async () => {
    const client = await server.client();
    const error = await client.call({ op: "connect" });
    assert.equal(error.op === "error" && error.code, "bad_request");
    client.close();
  });

  test("info over limits.maxInfoBytes gets too_large", async () => {
    const client = await TestClient.open(server.url);
    const error = await client.call({ op: "connect", info: { blob: "x".repeat(5000) } });
    assert.equal(error.op === "error" && error.code, "too_large");
    client.close();
  });
});

describe("bad frames", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({ limits: { maxFrameBytes: 1024 } });
  });
  after(() => server.close());

  for (const [name, raw] of [
    ["invalid JSON", "{nope"],
    ["a JSON array", "[1,2]"],
    ["a JSON string", '"connect"'],
    ["JSON null", "null"],
  ] as const) {
    test(`${name} closes with 4002`, async () => {
      const client = await server.client();
      client.sendRaw(raw);
      assert.equal((await client.waitClosed()).code, 4002);
    });
  }

  test("invalid JSON as the very first frame closes with 4002", async () => {
    const client = await TestClient.open(server.url);
    client.sendRaw("{nope");
    assert.equal((await client.waitClosed()).code, 4002);
  });

  test("a binary frame on the JSON subprotocol closes with 4002", async () => {
    const client = await server.client();
    client.sendRaw(Buffer.from('{"op":"pong"}'), true);
    assert.equal((await client.waitClosed()).code, 4002);
  });

  test("a frame over limits.maxFrameBytes closes with 4009", async () => {
    const client = await server.client();
    client.send({ op: "publish", room: "a", data: "x".repeat(1100) });
    assert.equal((await client.waitClosed()).code, 4009);
  });

  test("a frame far over the limit is refused before it is buffered", async () => {
    const client = await server.client();
    client.send({ op: "publish", room: "a", data: "x".repeat(100_000) });
    const closed = await client.waitClosed();
    assert.ok(closed.code === 4009 || closed.code === 1009, `closed with ${closed.code}`);
  });

  const invalid: [string, Record<string, unknown>, RegExp][] = [
    ["an unknown op", { op: "dance" }, /unknown op 'dance'/],
    ["a missing op", { room: "a" }, /'op' is required/],
    ["a room with a space", { op: "subscribe", room: "a b" }, /'room' must be/],
    ["an empty room", { op: "subscribe", room: "" }, /'room' must be/],
    ["a room of 201 characters", { op: "subscribe", room: "a".repeat(201) }, /'room' must be/],
    ["a numeric room", { op: "publish", room: 5, data: 1 }, /'room' must be/],
    ["publish without data", { op: "publish", room: "a" }, /'data' is required/],
    ['send to user ""', { op: "send", user: "", data: 1 }, /must not be empty/],
    ["send with a numeric user", { op: "send", user: 7, data: 1 }, /'user' must be a string/],
    ["since of the wrong shape", { op: "subscribe", room: "a", since: { offset: -1, epoch: "e" } }, /'since'/],
    ["history with limit 0", { op: "history", room: "a", limit: 0 }, /'limit'/],
    ["refresh without token", { op: "refresh" }, /'token' is required/],
  ];
  for (const [name, frame, message] of invalid) {
    test(`${name} gets bad_request echoing the id`, async () => {
      const client = await server.client();
      const reply = await client.call(frame);
      assert.equal(reply.op, "error");
      if (reply.op !== "error") return;
      assert.equal(reply.code, "bad_request");
      assert.match(reply.message, message);
      client.close();
    });
  }

  test("a bad field without id gets bad_request without id, and the connection stays open", async () => {
    const client = await server.client();
    client.send({ op: "dance" });
    const error = await client.next("error");
    assert.equal(error.op === "error" && error.code, "bad_request");
    assert.equal("id" in error, false);
    const ok = await client.call({ op: "subscribe", room: "still-open" });
    assert.equal(ok.op, "subscribed");
    client.close();
  });

  for (const id of [0, -1, 1.5, "7"]) {
    test(`id ${JSON.stringify(id)} gets bad_request without id`, async () => {
      const client = await server.client();
      client.send({ op: "subscribe", room: "a", id });
      const error = await client.next("error");
      assert.equal(error.op === "error" && error.code, "bad_request");
      assert.equal("id" in error, false);
      client.close();
    });
  }
});

describe("rooms and users", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({
      jwt: { secret: JWT_SECRET },
      allowAnonymous: true,
      namespaces: {
        secret: { subscribe: "token", publish: "token" },
        notify: { subscribe: "public", publish: "none" },
      },
      limits: { maxSubscriptions: 3 },
    });
  });
  after(() => server.close());

  test("subscribe, receive publications from another client, unsubscribe", async () => {
    const alice = await server.client();
    const bob = await server.client();
    const subscribed = await alice.call({ op: "subscribe", room: "lobby" });
    assert.deepEqual(subscribed, { op: "subscribed", id: 1 + 1, room: "lobby", recovered: false });
    await bob.call({ op: "subscribe", room: "lobby" });
    const ok = await bob.call({ op: "publish", room: "lobby", data: { text: "hi", n: [1, 2] } });
    assert.deepEqual(ok, { op: "ok", id: 3 });
    const message = await alice.next("message");
    assert.deepEqual(message, { op: "message", room: "lobby", data: { text: "hi", n: [1, 2] } });
    const unsubscribed = await alice.call({ op: "unsubscribe", room: "lobby" });
    assert.equal(unsubscribed.op, "ok");
    await alice.call({ op: "subscribe", room: "lobby-barrier" });
    await bob.call({ op: "subscribe", room: "lobby-barrier" });
    await bob.call({ op: "publish", room: "lobby", data: "after" });
    // A publication to another of Alice's rooms, after "after", is the barrier on her own connection.
    await bob.call({ op: "publish", room: "lobby-barrier", data: "barrier" });
    await alice.seen((f) => f.op === "message" && f.data === "barrier", "the barrier");
    assert.deepEqual(
      alice.all("message").map((m) => (m.op === "message" ? m.data : undefined)),
      [{ text: "hi", n: [1, 2] }, "barrier"],
      "nothing of lobby after the unsubscribe",
    );
    alice.close();
    bob.close();
  });

  test("a publisher subscribed to the room receives its own publication", async () => {
    const client = await server.client();
    await client.call({ op: "subscribe", room: "echo" });
    await client.call({ op: "publish", room: "echo", data: 42 });
    const message = await client.next("message");
    assert.equal(message.op === "message" && message.data, 42);
    client.close();
  });

  test("commands without id get no success reply, but their effects happen", async () => {
    const client = await server.client();
    client.send({ op: "subscribe", room: "quiet" });
    client.send({ op: "publish", room: "quiet", data: "x" });
    await client.next("message");
    const unsubscribed = await client.call({ op: "unsubscribe", room: "quiet" });
    assert.equal(unsubscribed.op, "ok");
    assert.deepEqual(
      client.frames.map((frame) => frame.op),
      ["connected", "message", "ok"],
    );
    client.close();
  });

  test("subscribing twice gets already_subscribed; unsubscribing twice gets not_subscribed", async () => {
    const client = await server.client();
    await client.call({ op: "subscribe", room: "twice" });
    const again = await client.call({ op: "subscribe", room: "twice" });
    assert.equal(again.op === "error" && again.code, "already_subscribed");
    await client.call({ op: "unsubscribe", room: "twice" });
    const gone = await client.call({ op: "unsubscribe", room: "twice" });
    assert.equal(gone.op === "error" && gone.code, "not_subscribed");
    client.close();
  });

  test("publishing in the default namespace without subscribing is forbidden", async () => {
    const client = await server.client();
    const reply = await client.call({ op: "publish", room: "elsewhere", data: 1 });
    assert.equal(reply.op === "error" && reply.code, "forbidden");
    assert.match(reply.op === "error" ? reply.message : "", /subscribe first/);
    client.close();
  });

  test("connect then subscribe without waiting: the subscribe waits for the connect", async () => {
    const client = await TestClient.open(server.url);
    // Sent in one go, so they reach the server together, while the connect is still under way.
    client.send({ op: "connect", id: 1 });
    client.send({ op: "subscribe", room: "pipelined", id: 2 });
    const reply = await client.waitFor((f) => "id" in f && f.id === 2, "subscribe reply");
    assert.equal(reply.op, "subscribed", JSON.stringify(reply));
    client.close();
  });

  test("a command queued behind a connect that fails closes with 4001, as any command before connect does", async () => {
    const client = await TestClient.open(server.url);
    client.send({ op: "connect", id: 1, info: { big: "x".repeat(4096) } });
    client.send({ op: "subscribe", room: "pipelined", id: 2 });
    assert.equal((await client.waitClosed()).code, 4001);
  });

  test("subscribe then publish without waiting keeps their order", async () => {
    const client = await server.client();
    client.send({ op: "subscribe", room: "order", id: 10 });
    client.send({ op: "publish", room: "order", data: "now", id: 11 });
    const ok = await client.waitFor((f) => "id" in f && f.id === 11, "publish reply");
    assert.equal(ok.op, "ok");
    client.close();
  });

  test("a namespace with publish none refuses client publishes, naming the namespace", async () => {
    const client = await server.client();
    await client.call({ op: "subscribe", room: "notify:all" });
    const reply = await client.call({ op: "publish", room: "notify:all", data: 1 });
    assert.equal(reply.op === "error" && reply.code, "forbidden");
    assert.match(reply.op === "error" ? reply.message : "", /namespace 'notify'/);
    client.close();
  });

  test("a token namespace needs a matching rooms or publish claim", async () => {
    const anonymous = await server.client();
    const refused = await anonymous.call({ op: "subscribe", room: "secret:1" });
    assert.equal(refused.op === "error" && refused.code, "forbidden");
    const holder = await server.client({
      token: await token({ sub: "carol", rooms: ["secret:*"], publish: ["secret:1"] }),
    });
    assert.equal((await holder.call({ op: "subscribe", room: "secret:1" })).op, "subscribed");
    assert.equal((await holder.call({ op: "subscribe", room: "secret:2" })).op, "subscribed");
    assert.equal((await holder.call({ op: "publish", room: "secret:1", data: 1 })).op, "ok");
    const denied = await holder.call({ op: "publish", room: "secret:2", data: 1 });
    assert.equal(denied.op === "error" && denied.code, "forbidden");
    anonymous.close();
    holder.close();
  });

  test("limits.maxSubscriptions is enforced", async () => {
    const client = await server.client();
    for (const room of ["l1", "l2", "l3"])
      assert.equal((await client.call({ op: "subscribe", room })).op, "subscribed");
    const refused = await client.call({ op: "subscribe", room: "l4" });
    assert.equal(refused.op === "error" && refused.code, "forbidden");
    assert.match(refused.op === "error" ? refused.message : "", /maxSubscriptions/);
    await client.call({ op: "unsubscribe", room: "l1" });
    assert.equal((await client.call({ op: "subscribe", room: "l4" })).op, "subscribed");
    client.close();
  });

  test("send reaches every connection of the user, with from", async () => {
    const dave1 = await server.client({ token: await token({ sub: "dave" }) });
    const dave2 = await server.client({ token: await token({ sub: "dave" }) });
    const erin = await server.client({ token: await token({ sub: "erin" }) });
    const ok = await erin.call({ op: "send", user: "dave", data: { ping: 1 } });
    assert.equal(ok.op, "ok");
    for (const dave of [dave1, dave2]) {
      assert.deepEqual(await dave.next("direct"), { op: "direct", data: { ping: 1 }, from: "erin" });
    }
    // One to erin, sent after hers, is the barrier: had hers come back to her, it would be first.
    assert.equal((await dave1.call({ op: "send", user: "erin", data: "barrier" })).op, "ok");
    assert.deepEqual(await erin.next("direct"), { op: "direct", data: "barrier", from: "dave" });
    assert.equal(erin.all("direct").length, 1, "the sender does not get its own direct message");
    for (const client of [dave1, dave2, erin]) client.close();
  });

  test("anonymous connections may not send (clientSend: authenticated)", async () => {
    const client = await server.client();
    const reply = await client.call({ op: "send", user: "dave", data: 1 });
    assert.equal(reply.op === "error" && reply.code, "forbidden");
    client.close();
  });

  test("presence and history on a namespace without them get bad_request naming the option", async () => {
    const client = await server.client();
    const presence = await client.call({ op: "presence", room: "chat:1" });
    assert.equal(presence.op === "error" && presence.code, "bad_request");
    assert.match(presence.op === "error" ? presence.message : "", /presence.*default namespace/);
    const history = await client.call({ op: "history", room: "secret:1" });
    assert.match(history.op === "error" ? history.message : "", /history.*namespace 'secret'/);
    client.close();
  });
});

describe("tokens", () => {
  let server: TestNode;
  before(async () => {
    // Pings every 2.5 s: a ping is an event that comes after a 2 s token has expired. (Tokens
    // expire on whole seconds: one of "1 s" may have a millisecond left when it is signed.)
    server = await startNode({ jwt: { secret: JWT_SECRET }, timeouts: { ping: 2.5, pong: 10 } });
  });
  after(() => server.close());

  test("a valid token sets the user and info", async () => {
    const client = await TestClient.open(server.url);
    const reply = await client.call({ op: "connect", token: await token({ sub: "u1", info: { name: "U" } }) });
    assert.equal(reply.op === "connected" && reply.user, "u1");
    client.close();
  });

  test("with a key configured, a connect without token is unauthorized (4003)", async () => {
    const client = await TestClient.open(server.url);
    const reply = await client.call({ op: "connect" });
    assert.equal(reply.op === "error" && reply.code, "unauthorized");
    assert.equal((await client.waitClosed()).code, 4003);
  });

  for (const [name, make] of [
    ["a token signed with another secret", () => token({ sub: "u" }, { secret: "another-secret-of-enough-length!!" })],
    ["a token without sub", () => token({ name: "x" })],
    ["a malformed token", async () => "not.a.jwt"],
  ] as const) {
    test(`${name} is unauthorized (4003)`, async () => {
      const client = await TestClient.open(server.url);
      const reply = await client.call({ op: "connect", token: await make() });
      assert.equal(reply.op === "error" && reply.code, "unauthorized");
      assert.equal((await client.waitClosed()).code, 4003);
    });
  }

  test("an expired token closes with 4005", async () => {
    const client = await TestClient.open(server.url);
    const reply = await client.call({ op: "connect", token: await token({ sub: "u" }, { expiresInSeconds: -10 }) });
    assert.match(reply.op === "error" ? reply.message : "", /expired/);
    assert.equal((await client.waitClosed()).code, 4005);
  });

  test("a connection is closed with 4005 when its token expires", async () => {
    const client = await server.client({ token: await token({ sub: "u" }, { expiresInSeconds: 2 }) });
    const closed = await client.waitClosed(5000);
    assert.equal(closed.code, 4005);
  });

  test("refresh with a new token for the same sub keeps the connection open past the old expiry", async () => {
    const client = await server.client({ token: await token({ sub: "r" }, { expiresInSeconds: 2 }) });
    const ok = await client.call({ op: "refresh", token: await token({ sub: "r" }, { expiresInSeconds: 60 }) });
    assert.equal(ok.op, "ok");
    // The first ping comes after the first token's expiry: the connection still answers.
    await client.next("ping");
    client.send({ op: "pong" });
    assert.equal((await client.call({ op: "subscribe", room: "still" })).op, "subscribed");
    client.close();
  });

  test("refresh for another sub is forbidden; an invalid one is unauthorized", async () => {
    const client = await server.client({ token: await token({ sub: "r2" }) });
    const other = await client.call({ op: "refresh", token: await token({ sub: "mallory" }) });
    assert.equal(other.op === "error" && other.code, "forbidden");
    const invalid = await client.call({ op: "refresh", token: "x.y.z" });
    assert.equal(invalid.op === "error" && invalid.code, "unauthorized");
    client.close();
  });
});

describe("ping and pong", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({ timeouts: { ping: 0.2, pong: 0.2 } });
  });
  after(() => server.close());

  test("a client that answers pings stays connected", async () => {
    const client = await server.client();
    for (let i = 0; i < 3; i++) {
      await client.next("ping");
      client.send({ op: "pong" });
    }
    assert.equal((await client.call({ op: "subscribe", room: "alive" })).op, "subscribed");
    client.close();
  });

  test("a client that does not answer is closed with 4502", async () => {
    const client = await server.client();
    await client.next("ping");
    assert.equal((await client.waitClosed()).code, 4502);
  });
});

describe("rate limits", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({ limits: { commandsPerSecond: 5 } });
  });
  after(() => server.close());

  test("commands over the rate get rate_limited, and a flood closes with 4508", async () => {
    const client = await server.client();
    for (let i = 1; i <= 30; i++) client.send({ op: "subscribe", room: `r${i}`, id: i });
    const limited = await client.waitFor((f) => f.op === "error" && f.code === "rate_limited", "rate_limited");
    assert.equal(limited.op, "error");
    assert.equal((await client.waitClosed()).code, 4508);
  });
});

describe("hooks", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode(
      {},
      {
        authenticate: (request, connect) => {
          if (connect.token === "let-me-in") return { user: `hooked-${request.headers["x-tenant"] ?? "none"}` };
          if (connect.token === "nope") return null;
          return undefined;
        },
        authorize: (session, room, action) => {
          if (room.startsWith("vip")) return session.user === "hooked-acme";
          if (room === "open-publish" && action === "publish") return true;
          if (room === "broken-hook") throw new Error("database down");
          return undefined;
        },
      },
    );
  });
  after(() => server.close());

  test("authenticate can accept with an identity, seeing the upgrade request", async () => {
    const client = await TestClient.open(server.url, { headers: { "x-tenant": "acme" } });
    const reply = await client.call({ op: "connect", token: "let-me-in" });
    assert.equal(reply.op === "connected" && reply.user, "hooked-acme");
    assert.equal((await client.call({ op: "subscribe", room: "vip-lounge" })).op, "subscribed");
    client.close();
  });

  test("authenticate can refuse (4003)", async () => {
    const client = await TestClient.open(server.url);
    const reply = await client.call({ op: "connect", token: "nope" });
    assert.equal(reply.op === "error" && reply.code, "unauthorized");
    assert.equal((await client.waitClosed()).code, 4003);
  });

  test("a hook that throws something other than a ProtocolError gives internal, and the connection stays", async () => {
    const client = await server.client();
    const reply = await client.call({ op: "subscribe", room: "broken-hook" });
    assert.deepEqual(reply, { op: "error", id: 2, code: "internal", message: "internal error" });
    assert.equal((await client.call({ op: "subscribe", room: "fine" })).op, "subscribed");
    client.close();
  });

  test("authorize can refuse and can allow beyond the namespace policy", async () => {
    const client = await server.client();
    const vip = await client.call({ op: "subscribe", room: "vip-lounge" });
    assert.equal(vip.op === "error" && vip.code, "forbidden");
    // publish: "subscribers" would refuse; the hook allows.
    assert.equal((await client.call({ op: "publish", room: "open-publish", data: 1 })).op, "ok");
    client.close();
  });
});

describe("rooms with history", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({ namespaces: { chat: { history: { size: 5, ttl: "10m" } } } });
  });
  after(() => server.close());

  test("subscribed and ok carry offset and epoch; messages carry offsets", async () => {
    const client = await server.client();
    const subscribed = await client.call({ op: "subscribe", room: "chat:a" });
    assert.equal(subscribed.op, "subscribed");
    if (subscribed.op !== "subscribed") return;
    assert.equal(subscribed.offset, 0);
    assert.equal(typeof subscribed.epoch, "string");
    const ok = await client.call({ op: "publish", room: "chat:a", data: "one" });
    assert.deepEqual(ok, { op: "ok", id: 3, offset: 1, epoch: subscribed.epoch });
    assert.deepEqual(await client.next("message"), { op: "message", room: "chat:a", data: "one", offset: 1 });
    client.close();
  });

  test("subscribe with since replays exactly the missed messages, then live ones", async () => {
    const publisher = await server.client();
    await publisher.call({ op: "subscribe", room: "chat:b" });
    const first = await publisher.call({ op: "publish", room: "chat:b", data: 1 });
    assert.ok(
      first.op === "ok" && typeof first.epoch === "string",
      `a publish reply with an epoch: ${JSON.stringify(first)}`,
    );
    for (const n of [2, 3, 4]) await publisher.call({ op: "publish", room: "chat:b", data: n });

    const late = await server.client();
    const subscribed = await late.call({ op: "subscribe", room: "chat:b", since: { offset: 1, epoch: first.epoch } });
    assert.deepEqual(subscribed, {
      op: "subscribed",
      id: 2,
      room: "chat:b",
      offset: 4,
      epoch: first.epoch,
      recovered: true,
    });
    await publisher.call({ op: "publish", room: "chat:b", data: 5 });
    const messages = [
      await late.next("message"),
      await late.next("message"),
      await late.next("message"),
      await late.next("message"),
    ];
    assert.deepEqual(
      messages.map((m) => (m.op === "message" ? [m.offset, m.data] : [])),
      [
        [2, 2],
        [3, 3],
        [4, 4],
        [5, 5],
      ],
    );
    // The replay came after the subscribed reply.
    const ops = late.frames.map((frame) => frame.op);
    assert.ok(ops.indexOf("subscribed") < ops.indexOf("message"));
    publisher.close();
    late.close();
  });

  test("since with another epoch, or older than what is retained, gets recovered: false and no replay", async () => {
    const publisher = await server.client();
    await publisher.call({ op: "subscribe", room: "chat:c" });
    for (let n = 1; n <= 8; n++) await publisher.call({ op: "publish", room: "chat:c", data: n });
    const stale = await server.client();
    const wrongEpoch = await stale.call({ op: "subscribe", room: "chat:c", since: { offset: 7, epoch: "other" } });
    assert.equal(wrongEpoch.op === "subscribed" && wrongEpoch.recovered, false);
    assert.equal(wrongEpoch.op === "subscribed" && wrongEpoch.offset, 8);
    const epoch = wrongEpoch.op === "subscribed" ? wrongEpoch.epoch : "";
    await stale.call({ op: "unsubscribe", room: "chat:c" });
    // Size 5 retains offsets 4..8: since 1 would need 2 and 3.
    const trimmed = await stale.call({ op: "subscribe", room: "chat:c", since: { offset: 1, epoch } });
    assert.equal(trimmed.op === "subscribed" && trimmed.recovered, false);
    // A message published now is the barrier: any replay would have come before it.
    await publisher.call({ op: "publish", room: "chat:c", data: "barrier" });
    const firstMessage = await stale.next("message");
    assert.deepEqual(firstMessage, { op: "message", room: "chat:c", data: "barrier", offset: 9 });
    assert.equal(stale.all("message").length, 1, "no replay before the barrier");
    publisher.close();
    stale.close();
  });

  test("since on a room without history is ignored: recovered false, no offsets", async () => {
    const client = await server.client();
    const reply = await client.call({ op: "subscribe", room: "plain", since: { offset: 3, epoch: "x" } });
    assert.deepEqual(reply, { op: "subscribed", id: 2, room: "plain", recovered: false });
    client.close();
  });

  test("the history op and GET /api/history return retained messages, oldest first", async () => {
    const client = await server.client({});
    await client.call({ op: "subscribe", room: "chat:d" });
    for (const n of [1, 2, 3]) await client.call({ op: "publish", room: "chat:d", data: { n } });
    const reply = await client.call({ op: "history", room: "chat:d", limit: 2 });
    assert.equal(reply.op, "history");
    if (reply.op !== "history") return;
    assert.equal(reply.offset, 3);
    assert.deepEqual(reply.messages, [
      { room: "chat:d", data: { n: 2 }, offset: 2 },
      { room: "chat:d", data: { n: 3 }, offset: 3 },
    ]);
    const since = await client.call({ op: "history", room: "chat:d", since: { offset: 1, epoch: reply.epoch } });
    assert.deepEqual(since.op === "history" && since.messages.map((m) => m.offset), [2, 3]);
    const http = await server.api(`/api/history?room=chat:d&since=2&epoch=${reply.epoch}`);
    assert.deepEqual(http, {
      status: 200,
      body: { offset: 3, epoch: reply.epoch, messages: [{ room: "chat:d", data: { n: 3 }, offset: 3 }] },
    });
    client.close();
  });

  test("POST /api/publish into a room with history returns offset and epoch", async () => {
    const result = await server.api("/api/publish", { room: "chat:e", data: "x" });
    assert.equal(result.status, 200);
    const body = result.body as { offset: number; epoch: string };
    assert.equal(body.offset, 1);
    assert.equal(typeof body.epoch, "string");
  });
});

describe("MessagePack subprotocol", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({ namespaces: { chat: { history: { size: 10, ttl: "1m" } } } });
  });
  after(() => server.close());

  test("crier.v1.msgpack speaks the same frames in binary, and mixes with JSON clients in one room", async () => {
    const binary = await TestClient.open(server.url, { protocols: ["crier.v1.msgpack"] });
    assert.equal(binary.ws.protocol, "crier.v1.msgpack");
    assert.equal((await binary.call({ op: "connect" })).op, "connected");
    const json = await server.client();
    assert.equal((await binary.call({ op: "subscribe", room: "chat:mixed" })).op, "subscribed");
    await json.call({ op: "subscribe", room: "chat:mixed" });
    await json.call({ op: "publish", room: "chat:mixed", data: { text: "héllo", n: [1, 2.5, null] } });
    await binary.call({ op: "publish", room: "chat:mixed", data: "from msgpack" });
    const expected = [
      { op: "message", room: "chat:mixed", data: { text: "héllo", n: [1, 2.5, null] }, offset: 1 },
      { op: "message", room: "chat:mixed", data: "from msgpack", offset: 2 },
    ];
    for (const client of [binary, json]) {
      assert.deepEqual([await client.next("message"), await client.next("message")], expected);
    }
    assert.equal(binary.frames.length, binary.binaryFrames, "every frame to the MessagePack client is binary");
    binary.close();
    json.close();
  });

  test("a text frame on the MessagePack subprotocol closes with 4002, and so does invalid MessagePack", async () => {
    const text = await TestClient.open(server.url, { protocols: ["crier.v1.msgpack"] });
    text.sendRaw('{"op":"connect"}');
    assert.equal((await text.waitClosed()).code, 4002);
    const garbage = await TestClient.open(server.url, { protocols: ["crier.v1.msgpack"] });
    garbage.sendRaw(Buffer.from([0xc1]), true);
    assert.equal((await garbage.waitClosed()).code, 4002);
  });
});
