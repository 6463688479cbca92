// Presence and join/leave events on one instance, over real WebSockets as
// docs/protocol.md says: the `presence` and `presence_stats` ops, GET /api/presence
// and /api/presence/stats, `join` and `leave`
// pushes, and what a namespace that does not enable them answers.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import type { Member, ServerFrame } from "crier-protocol";
import { startNode, type TestNode } from "../../../../test/support/node.js";
import { JWT_SECRET, token } from "../../../../test/support/tokens.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { TestClient } from "../../../../test/support/ws-client.js";

let server: TestNode;
let clients: TestClient[] = [];

before(async () => {
  server = await startNode({
    jwt: { secret: JWT_SECRET },
    allowAnonymous: true,
    namespaces: {
      chat: { presence: true, joinLeave: true },
      roster: { presence: true },
      events: { joinLeave: true },
      plain: {},
      vault: { subscribe: "token", presence: true },
      log: { history: { size: 10, ttl: "1m" }, presence: true, joinLeave: true },
    },
  });
});
afterEach(() => {
  for (const client of clients) client.ws.terminate();
  clients = [];
});
after(() => server.close());

/** Connects (with a token for `user`, anonymously for ""), returning the client and its client id. */
async function connect(
  user: string,
  options: { info?: Record<string, unknown>; tokenInfo?: Record<string, unknown>; msgpack?: boolean } = {},
): Promise<{ client: TestClient; id: string }> {
  const client = await TestClient.open(server.url, options.msgpack ? { protocols: ["crier.v1.msgpack"] } : {});
  clients.push(client);
  const connect: Record<string, unknown> = { op: "connect" };
  if (user !== "") {
    connect.token = await token(
      options.tokenInfo === undefined ? { sub: user } : { sub: user, info: options.tokenInfo },
    );
  }
  if (options.info !== undefined) connect.info = options.info;
  const reply = await client.call(connect);
  if (reply.op !== "connected") throw new Error(`connect failed: ${JSON.stringify(reply)}`);
  return { client, id: reply.client };
}

async function subscribe(client: TestClient, room: string): Promise<void> {
  const reply = await client.call({ op: "subscribe", room });
  assert.equal(reply.op, "subscribed", `subscribe to ${room}: ${JSON.stringify(reply)}`);
}

async function presence(client: TestClient, room: string): Promise<Member[]> {
  const reply = await client.call({ op: "presence", room });
  if (reply.op !== "presence") throw new Error(`presence of ${room}: ${JSON.stringify(reply)}`);
  assert.equal(reply.room, room);
  return reply.members;
}

function isPush(op: "join" | "leave", room: string, client: string): (frame: ServerFrame) => boolean {
  return (frame) => frame.op === op && frame.room === room && frame.member.client === client;
}

/** The join and leave pushes a client received, as "join CLIENT" / "leave CLIENT". */
function pushes(client: TestClient, room: string): string[] {
  const out: string[] = [];
  for (const frame of client.frames) {
    if ((frame.op === "join" || frame.op === "leave") && frame.room === room)
      out.push(`${frame.op} ${frame.member.client}`);
  }
  return out;
}

describe("the presence op and GET /api/presence", () => {
  test("every subscriber is listed with user, client and info (from the token, else the connect frame), itself included", async () => {
    const room = "roster:1";
    const ann = await connect("ann", { tokenInfo: { name: "Ann" }, info: { ignored: true } });
    const bob = await connect("bob", { info: { color: "blue" } });
    const anon = await connect("");
    for (const { client } of [ann, bob, anon]) await subscribe(client, room);

    const expected: Member[] = [
      { user: "", client: anon.id },
      { user: "ann", client: ann.id, info: { name: "Ann" } },
      { user: "bob", client: bob.id, info: { color: "blue" } },
    ];
    assert.deepEqual(await presence(ann.client, room), expected);
    // Any connection may ask, subscribed or not.
    const outsider = await connect("zed");
    assert.deepEqual(await presence(outsider.client, room), expected);
    assert.deepEqual(await server.api(`/api/presence?room=${room}`), { status: 200, body: { members: expected } });
  });

  test("a member leaves the list when it unsubscribes, is unsubscribed by the server, or disconnects", async () => {
    const room = "roster:2";
    const ann = await connect("ann2");
    const bob = await connect("bob2");
    const cat = await connect("cat2");
    const dan = await connect("dan2");
    for (const { client } of [ann, bob, cat, dan]) await subscribe(client, room);
    const listed = async (): Promise<string[]> => (await presence(dan.client, room)).map((m) => m.user);
    assert.deepEqual(await listed(), ["ann2", "bob2", "cat2", "dan2"]);

    assert.equal((await ann.client.call({ op: "unsubscribe", room })).op, "ok");
    assert.deepEqual(await listed(), ["bob2", "cat2", "dan2"]);

    assert.equal((await server.api("/api/unsubscribe", { user: "bob2", room })).status, 200);
    await bob.client.seen((frame) => frame.op === "unsubscribed" && frame.room === room, "bob's unsubscribed push");
    await waitUntil("bob is off the list", async () => !(await listed()).includes("bob2"));

    cat.client.close();
    await cat.client.waitClosed();
    await waitUntil("cat is off the list", async () => !(await listed()).includes("cat2"));
    assert.deepEqual(await listed(), ["dan2"]);
  });

  test("a connection closed while its subscribe is under way is neither listed nor left in the room", async () => {
    const room = "roster:closing";
    for (let i = 0; i < 20; i++) {
      const { client } = await connect("");
      // Both frames arrive in one read: the bad one closes the connection before the subscribe completes.
      client.send({ op: "subscribe", room, id: 1 });
      client.sendRaw("not json");
      assert.equal((await client.waitClosed()).code, 4002);
    }
    await waitUntil("every connection is gone", () => server.node.connectionCount() === 0);
    assert.equal(server.node.hub.roomSize(room), 0);
    assert.deepEqual((await server.api(`/api/presence?room=${room}`)).body, { members: [] });
  });

  test("a subscriber of a room with history is listed too", async () => {
    const ann = await connect("ann3");
    await subscribe(ann.client, "log:1");
    assert.deepEqual(await presence(ann.client, "log:1"), [{ user: "ann3", client: ann.id }]);
  });

  test("a namespace without presence answers bad_request naming the namespace and the option", async () => {
    const { client } = await connect("ann4");
    for (const [room, where] of [
      ["plain:1", "namespace 'plain'"],
      ["events:1", "namespace 'events'"],
      ["lobby", "the default namespace"],
    ] as const) {
      const reply = await client.call({ op: "presence", room });
      assert.equal(reply.op === "error" && reply.code, "bad_request", JSON.stringify(reply));
      assert.match(
        reply.op === "error" ? reply.message : "",
        new RegExp(`presence is not enabled in ${where}.*"presence": true`),
      );
      const http = await server.api(`/api/presence?room=${room}`);
      assert.equal(http.status, 400);
      assert.deepEqual((http.body as { error?: { code?: string } }).error?.code, "bad_request");
    }
    assert.equal((await server.api("/api/presence?room=bad%20room")).status, 400);
  });

  test("in a namespace with subscribe: token, a client needs the right to subscribe to ask; the backend does not", async () => {
    const room = "vault:7";
    const visitor = await connect("visitor");
    const allowed = await TestClient.connect(server.url, { token: await token({ sub: "keeper", rooms: ["vault:*"] }) });
    clients.push(allowed);
    await subscribe(allowed, room);
    const refused = await visitor.client.call({ op: "presence", room });
    assert.equal(refused.op === "error" && refused.code, "forbidden", JSON.stringify(refused));
    assert.deepEqual(
      (await presence(allowed, room)).map((m) => m.user),
      ["keeper"],
    );
    const http = await server.api(`/api/presence?room=${room}`);
    assert.deepEqual(
      (http.body as { members: Member[] }).members.map((m) => m.user),
      ["keeper"],
    );
  });
});

describe("presence counts", () => {
  async function stats(client: TestClient, room: string): Promise<unknown> {
    const reply = await client.call({ op: "presence_stats", room });
    return reply.op === "presence_stats" ? { room: reply.room, clients: reply.clients, users: reply.users } : reply;
  }

  test("presence_stats and GET /api/presence/stats count connections and distinct users, without listing them", async () => {
    const room = "chat:counted";
    const first = await connect("counter");
    const second = await connect("counter");
    const other = await connect("other");
    const anonymous = await connect("");
    assert.deepEqual(await stats(first.client, room), { room, clients: 0, users: 0 }, "asked before subscribing");
    for (const { client } of [first, second, other, anonymous]) await subscribe(client, room);
    assert.deepEqual(await stats(other.client, room), { room, clients: 4, users: 3 }, "anonymous is one user");
    assert.deepEqual((await server.api(`/api/presence/stats?room=${room}`)).body, { clients: 4, users: 3 });
    await first.client.call({ op: "unsubscribe", room });
    assert.deepEqual(await stats(other.client, room), { room, clients: 3, users: 3 });
    second.client.close();
    await waitUntil("the closed connection is counted out", async () => {
      const body = (await server.api(`/api/presence/stats?room=${room}`)).body as { clients: number };
      return body.clients === 2;
    });
    assert.deepEqual(await stats(other.client, room), { room, clients: 2, users: 2 });
  });

  test("presence_stats is refused where presence is: a namespace without it, a room the client may not enter", async () => {
    const { client } = await connect("counter2");
    const reply = await client.call({ op: "presence_stats", room: "events:1" });
    assert.equal(reply.op === "error" && reply.code, "bad_request", JSON.stringify(reply));
    assert.match(reply.op === "error" ? reply.message : "", /presence is not enabled in namespace 'events'/);
    assert.equal((await server.api("/api/presence/stats?room=events:1")).status, 400);
    assert.equal((await server.api("/api/presence/stats?room=bad%20room")).status, 400);
    const refused = await client.call({ op: "presence_stats", room: "vault:9" });
    assert.equal(refused.op === "error" && refused.code, "forbidden", JSON.stringify(refused));
    assert.equal((await server.api("/api/presence/stats?room=vault:9")).status, 200, "the backend may ask");
  });
});

describe("join and leave pushes", () => {
  test("the room's other subscribers hear of each join and leave; a member is not told of its own join", async () => {
    const room = "chat:1";
    const ann = await connect("ann", { tokenInfo: { name: "Ann" } });
    await subscribe(ann.client, room);
    const bob = await connect("bob", { info: { color: "blue" } });
    await subscribe(bob.client, room);
    const join = await ann.client.seen(isPush("join", room, bob.id), "bob's join at ann");
    assert.deepEqual(join, { op: "join", room, member: { user: "bob", client: bob.id, info: { color: "blue" } } });

    const cat = await connect("cat");
    await subscribe(cat.client, room);
    for (const { client } of [ann, bob]) await client.seen(isPush("join", room, cat.id), "cat's join");
    // Bob heard of cat, who came after him, so he would have heard of himself by now.
    assert.deepEqual(pushes(bob.client, room), [`join ${cat.id}`]);

    assert.equal((await bob.client.call({ op: "unsubscribe", room })).op, "ok");
    for (const { client } of [ann, cat]) {
      const leave = await client.seen(isPush("leave", room, bob.id), "bob's leave");
      assert.deepEqual(leave, { op: "leave", room, member: { user: "bob", client: bob.id, info: { color: "blue" } } });
    }

    assert.equal((await server.api("/api/unsubscribe", { user: "cat", room })).status, 200);
    await ann.client.seen(isPush("leave", room, cat.id), "cat's leave after the server unsubscribed her");

    const dan = await connect("dan");
    await subscribe(dan.client, room);
    await ann.client.seen(isPush("join", room, dan.id), "dan's join");
    dan.client.ws.terminate();
    await ann.client.seen(isPush("leave", room, dan.id), "dan's leave after his connection dropped");

    assert.deepEqual(pushes(ann.client, room), [
      `join ${bob.id}`,
      `join ${cat.id}`,
      `leave ${bob.id}`,
      `leave ${cat.id}`,
      `join ${dan.id}`,
      `leave ${dan.id}`,
    ]);
    assert.deepEqual(pushes(bob.client, room), [`join ${cat.id}`], "nothing after bob left");
  });

  test("a member's join comes after it is listed: presence on hearing it includes the member", async () => {
    const room = "log:2";
    const ann = await connect("ann5");
    await subscribe(ann.client, room);
    const bob = await connect("bob5");
    await subscribe(bob.client, room);
    await ann.client.seen(isPush("join", room, bob.id), "bob's join in a room with history");
    assert.deepEqual((await presence(ann.client, room)).map((m) => m.client).sort(), [ann.id, bob.id].sort());
  });

  test("joinLeave without presence sends the pushes; presence without joinLeave sends none", async () => {
    const ann = await connect("ann6");
    const bob = await connect("bob6");
    await subscribe(ann.client, "events:1");
    await subscribe(bob.client, "events:1");
    await ann.client.seen(isPush("join", "events:1", bob.id), "bob's join in events:1");

    await subscribe(ann.client, "roster:6");
    await subscribe(bob.client, "roster:6");
    // A publication after bob's subscribe is the barrier: a join would have come before it.
    assert.equal((await bob.client.call({ op: "publish", room: "roster:6", data: "hi" })).op, "ok");
    await ann.client.seen((f) => f.op === "message" && f.room === "roster:6", "bob's message");
    assert.deepEqual(pushes(ann.client, "roster:6"), []);
  });

  test("MessagePack subscribers get the same pushes as maps", async () => {
    const room = "chat:mp";
    const ann = await connect("ann7", { msgpack: true });
    await subscribe(ann.client, room);
    const bob = await connect("bob7", { tokenInfo: { n: 1 } });
    await subscribe(bob.client, room);
    const join = await ann.client.seen(isPush("join", room, bob.id), "bob's join, in MessagePack");
    assert.deepEqual(join, { op: "join", room, member: { user: "bob7", client: bob.id, info: { n: 1 } } });
    assert.ok(ann.client.binaryFrames >= 2, "the frames came as binary");
  });
});
