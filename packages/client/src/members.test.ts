// subscription.members and client.presenceStats() against a scripted server:
// the list is read after each (re)subscribe, pushes heard during the read are
// applied on top of it, and a reconnect replaces the list with a fresh read.

import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import type { Member } from "crier-protocol";
import { WebSocket } from "ws";
import { CrierClient } from "./client.js";
import { MemberList } from "./members.js";
import type { Subscription } from "./subscription.js";
import { type FakeConnection, FakeServer, type Frame } from "./testing/fake-server.js";
import { Inbox } from "./testing/inbox.js";

const ROOM = "chat:members";
const TEST = { timeout: 5000 };
const ANN: Member = { user: "ann", client: "a1", info: { name: "Ann" } };
const BOB: Member = { user: "bob", client: "b1" };
const CAT: Member = { user: "cat", client: "c1" };
const DAN: Member = { user: "dan", client: "d1" };

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(): Promise<{ server: FakeServer; client: CrierClient }> {
  const server = await FakeServer.start();
  cleanups.push(() => server.stop());
  const client = new CrierClient(server.url, { WebSocket, minReconnectDelayMs: 5, maxReconnectDelayMs: 40 });
  cleanups.push(() => client.close());
  return { server, client };
}

/** Every `members` event of a subscription, as sorted client ids, to await one by one. */
function changes(subscription: Subscription): Inbox<string> {
  const inbox = new Inbox<string>();
  subscription.on("members", (members) => inbox.push([...members.keys()].sort().join(",")));
  return inbox;
}

/** Answers the subscribe on `connection` and returns the `presence` command that follows it. */
async function confirm(connection: FakeConnection): Promise<Frame> {
  const subscribe = await connection.next("subscribe");
  connection.send({ op: "subscribed", id: subscribe.id, room: ROOM, recovered: false });
  const presence = await connection.next("presence");
  assert.equal(presence.room, ROOM);
  return presence;
}

const push = (op: "join" | "leave", member: Member): Frame => ({ op, room: ROOM, member });

describe("subscription.members", () => {
  it("is read with presence after subscribing, with the pushes heard meanwhile applied on top", TEST, async () => {
    const { server, client } = await setup();
    const subscription = client.subscribe(ROOM, () => {}, { members: true });
    const seen = changes(subscription);
    const [, connection] = await Promise.all([client.connect(), server.nextConnection()]);
    const presence = await confirm(connection);
    // Heard before the read's answer: CAT joins, BOB (listed in the answer) leaves.
    connection.send(push("join", CAT));
    connection.send(push("leave", BOB));
    connection.send({ op: "presence", id: presence.id, room: ROOM, members: [ANN, BOB] });
    assert.equal(await seen.next(), "a1,c1");
    assert.deepEqual(subscription.members.get("a1"), ANN);

    connection.send(push("join", DAN));
    assert.equal(await seen.next(), "a1,c1,d1");
    // A leave of a client not listed changes nothing; the next change shows it.
    connection.send(push("leave", BOB));
    connection.send(push("leave", CAT));
    assert.equal(await seen.next(), "a1,d1");
    assert.equal(seen.unread.length, 0);
    assert.equal(client.getSubscription(ROOM)?.members, subscription.members, "one live map");
  });

  it("is reset and read again after a reconnect: members that left meanwhile are gone", TEST, async () => {
    const { server, client } = await setup();
    const subscription = client.subscribe(ROOM, () => {}, { members: true });
    const seen = changes(subscription);
    const [, first] = await Promise.all([client.connect(), server.nextConnection()]);
    const read = await confirm(first);
    first.send({ op: "presence", id: read.id, room: ROOM, members: [ANN, BOB, CAT] });
    assert.equal(await seen.next(), "a1,b1,c1");

    // While the client is away BOB and CAT leave and DAN joins; it hears none of it.
    first.close(1012, "restart");
    const second = await server.nextConnection();
    await second.next("connect");
    const reread = await confirm(second);
    assert.deepEqual([...subscription.members.keys()].sort(), ["a1", "b1", "c1"], "kept until the new read");
    second.send(push("join", CAT));
    second.send({ op: "presence", id: reread.id, room: ROOM, members: [ANN, DAN] });
    assert.equal(await seen.next(), "a1,c1,d1", "the new read, with the join heard during it");
  });

  it("without the option, no presence is asked for and the map stays empty", TEST, async () => {
    const { server, client } = await setup();
    const subscription = client.subscribe(ROOM, () => {});
    const [, connection] = await Promise.all([client.connect(), server.nextConnection()]);
    const subscribe = await connection.next("subscribe");
    connection.send({ op: "subscribed", id: subscribe.id, room: ROOM, recovered: false });
    await subscription.ready;
    connection.send(push("join", ANN));
    // A later command's reply is the barrier: anything sent before it has been handled.
    const stats = client.presenceStats(ROOM);
    const asked = await connection.next("presence_stats");
    connection.send({ op: "presence_stats", id: asked.id, room: ROOM, clients: 12, users: 7 });
    assert.deepEqual(await stats, { clients: 12, users: 7 });
    assert.equal(subscription.members.size, 0);
    assert.ok(!connection.received.some((frame) => frame.op === "presence"));
  });

  it("a refused read is the subscription's error; the pushes alone keep the list then", TEST, async () => {
    const { server, client } = await setup();
    const subscription = client.subscribe(ROOM, () => {}, { members: true });
    const errors = new Inbox<Error>();
    subscription.on("error", (error) => errors.push(error));
    const [, connection] = await Promise.all([client.connect(), server.nextConnection()]);
    const presence = await confirm(connection);
    connection.send(push("join", ANN));
    connection.send({ op: "error", id: presence.id, code: "bad_request", message: "presence is not enabled" });
    assert.match((await errors.next()).message, /not enabled/);
    assert.deepEqual([...subscription.members.keys()], ["a1"]);
  });
});

describe("MemberList", () => {
  it("holds pushes until a read is answered, then applies them in order", () => {
    const list = new MemberList();
    assert.equal(list.push({ op: "join", room: ROOM, member: ANN }), false, "held before the first read");
    list.push({ op: "leave", room: ROOM, member: ANN });
    list.push({ op: "join", room: ROOM, member: BOB });
    list.loaded([ANN, CAT]);
    assert.deepEqual([...list.members.keys()], ["c1", "b1"]);
    assert.equal(list.push({ op: "leave", room: ROOM, member: DAN }), false, "not listed: no change");
    assert.equal(list.push({ op: "leave", room: ROOM, member: CAT }), true);
    list.reset();
    list.push({ op: "join", room: ROOM, member: DAN });
    assert.deepEqual([...list.members.keys()], ["b1"], "held again after a reset");
    list.loaded([]);
    assert.deepEqual([...list.members.keys()], ["d1"]);
  });
});
