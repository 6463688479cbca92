// Subscriptions the server makes (a JWT `subs` claim, the connect proxy's `rooms`)
// against a scripted server: announced by `connected`'s `subs`, confirmed by
// `subscribed` pushes, resumed with positions sent in `connect`, never sent as
// `subscribe`, ended when a connection no longer has them; and the server ending
// any subscription with an `unsubscribed` push.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type MessagePush, ProtocolError } from "crier-protocol";
import type { CrierClient } from "./client.js";
import type { Subscription } from "./subscription.js";
import type { FakeConnection, FakeServer, Frame } from "./testing/fake-server.js";
import { cleanUpAfterEach, makeClient, nextEvent, startServer, subscribedReply } from "./testing/harness.js";
import { Inbox } from "./testing/inbox.js";

const NOTIFY = "notify:u1";
const TEST = { timeout: 5000 };

cleanUpAfterEach();

interface Accepted {
  connection: FakeConnection;
  connect: Frame;
}

/** The next connection's `connect` frame, answered with `connected` listing `subs`. */
async function accept(server: FakeServer, subs: string[]): Promise<Accepted> {
  const connection = await server.nextConnection();
  const connect = await connection.next("connect");
  connection.send({ op: "connected", id: connect.id, client: "c1", user: "u1", node: "fake", ping: 25, subs });
  return { connection, connect };
}

/** Every subscription the client announces, to await one by one. */
function announced(client: CrierClient): Inbox<Subscription> {
  const inbox = new Inbox<Subscription>();
  client.on("subscription", (subscription) => inbox.push(subscription));
  return inbox;
}

/** Drops `connection` with a transient code and returns the client's next connection, answered with `subs`. */
async function reconnect(
  client: CrierClient,
  server: FakeServer,
  connection: FakeConnection,
  subs: string[],
): Promise<Accepted> {
  const disconnected = nextEvent(client, "disconnected");
  connection.close(1012, "restart");
  assert.equal((await disconnected).willReconnect, true);
  const reconnected = nextEvent(client, "connected");
  const next = await accept(server, subs);
  await reconnected;
  return next;
}

/** A client (with `before` done to it first) connected to a scripted server whose `connected` lists `subs`. */
async function setup(
  subs: string[],
  before: (client: CrierClient) => void = () => {},
): Promise<{ server: FakeServer; client: CrierClient; subscriptions: Inbox<Subscription>; first: Accepted }> {
  const server = await startServer({ autoConnect: false });
  const client = makeClient(server);
  const subscriptions = announced(client);
  before(client);
  const connecting = client.connect();
  const first = await accept(server, subs);
  await connecting;
  return { server, client, subscriptions, first };
}

/** The server's frames so far as ops, behind a ping's pong: nothing else can still be on its way. */
async function opsAfterPing(connection: FakeConnection): Promise<string[]> {
  connection.send({ op: "ping" });
  await connection.next("pong");
  return connection.received.map((frame) => frame.op as string);
}

describe("server-side subscriptions", () => {
  it("are announced before `connected`, found by getSubscription, and confirmed by the push", TEST, async () => {
    const order: string[] = [];
    const { client, subscriptions, first } = await setup([NOTIFY], (client) => {
      client.on("subscription", (subscription) => order.push(`subscription ${subscription.room}`));
      client.on("connected", () => order.push("connected"));
    });
    assert.equal("subs" in first.connect, false, "a first connection has nothing to resume");
    assert.deepEqual(order, [`subscription ${NOTIFY}`, "connected"]);
    const subscription = await subscriptions.next();
    assert.equal(client.getSubscription(NOTIFY), subscription);
    assert.deepEqual([subscription.room, subscription.serverSide, subscription.state], [NOTIFY, true, "subscribing"]);

    const inbox = new Inbox<MessagePush>();
    subscription.on("message", (message) => inbox.push(message));
    first.connection.send({ op: "subscribed", room: NOTIFY, offset: 4, epoch: "e1", recovered: false });
    first.connection.send({ op: "message", room: NOTIFY, data: "n5", offset: 5 });
    assert.deepEqual(await subscription.ready, { room: NOTIFY, offset: 4, epoch: "e1", recovered: false });
    assert.equal((await inbox.next()).data, "n5");
    assert.deepEqual(subscription.position, { offset: 5, epoch: "e1" });
    assert.equal(subscription.state, "active");
    assert.throws(() => client.subscribe(NOTIFY, () => {}), { code: "already_subscribed" });
    assert.deepEqual(await opsAfterPing(first.connection), ["connect", "pong"], "never sent as a subscribe");
  });

  it(
    "a reconnect resumes them from the positions sent with connect: no subscribe, no new announcement",
    TEST,
    async () => {
      let own: Subscription | undefined;
      const { server, client, subscriptions, first } = await setup([NOTIFY, "news"], (client) => {
        own = client.subscribe("chat:1", () => {});
      });
      const notify = await subscriptions.next();
      const news = await subscriptions.next();
      first.connection.send(subscribedReply(await first.connection.next("subscribe"), {}));
      first.connection.send({ op: "subscribed", room: NOTIFY, offset: 4, epoch: "e1", recovered: false });
      first.connection.send({ op: "subscribed", room: "news", recovered: false });
      first.connection.send({ op: "message", room: NOTIFY, data: "n5", offset: 5 });
      const inbox = new Inbox<MessagePush>();
      notify.on("message", (message) => inbox.push(message));
      await Promise.all([own?.ready, notify.ready, news.ready]);
      await inbox.next();

      const second = await reconnect(client, server, first.connection, [NOTIFY, "news"]);
      assert.deepEqual(second.connect.subs, { [NOTIFY]: { offset: 5, epoch: "e1" } }, "rooms with history only");
      const resubscribed = new Promise((resolve) => notify.once("resubscribed", resolve));
      second.connection.send({ op: "subscribed", room: NOTIFY, offset: 7, epoch: "e1", recovered: true });
      second.connection.send({ op: "message", room: NOTIFY, data: "n6", offset: 6 });
      second.connection.send({ op: "message", room: NOTIFY, data: "n7", offset: 7 });
      assert.deepEqual(await resubscribed, { room: NOTIFY, offset: 7, epoch: "e1", recovered: true });
      assert.deepEqual([(await inbox.next()).data, (await inbox.next()).data], ["n6", "n7"]);
      assert.deepEqual(notify.position, { offset: 7, epoch: "e1" });
      assert.equal(client.getSubscription(NOTIFY), notify, "the same object");
      // The client's own subscription is sent again; the server's are not.
      assert.equal((await second.connection.next("subscribe")).room, "chat:1");
      assert.deepEqual(await opsAfterPing(second.connection), ["connect", "subscribe", "pong"]);
      assert.deepEqual(subscriptions.unread, [], "nothing announced twice");
    },
  );

  it("one a new connection no longer has ends with `unsubscribed`; one it adds is announced", TEST, async () => {
    const { server, client, subscriptions, first } = await setup([NOTIFY]);
    const notify = await subscriptions.next();
    first.connection.send({ op: "subscribed", room: NOTIFY, offset: 1, epoch: "e1", recovered: false });
    await notify.ready;
    const ended = new Promise((resolve) => notify.once("unsubscribed", resolve));

    const second = await reconnect(client, server, first.connection, ["alerts"]);
    assert.deepEqual(second.connect.subs, { [NOTIFY]: { offset: 1, epoch: "e1" } });
    assert.deepEqual(await ended, { room: NOTIFY });
    assert.equal(notify.state, "unsubscribed");
    assert.equal(client.getSubscription(NOTIFY), undefined);
    assert.equal((await subscriptions.next()).room, "alerts");

    const third = await reconnect(client, server, second.connection, []);
    assert.equal("subs" in third.connect, false, "a room gone from the list is not resumed");
  });

  it("an error push naming the room fails it: ready rejects, and the client emits no error", TEST, async () => {
    const errors: Error[] = [];
    const { client, subscriptions, first } = await setup([NOTIFY, "full"], (client) => {
      client.on("error", (error) => errors.push(error));
    });
    const notify = await subscriptions.next();
    const full = await subscriptions.next();
    first.connection.send({ op: "error", room: "full", code: "rate_limited", message: "room 'full' is full" });
    await assert.rejects(full.ready, (error) => error instanceof ProtocolError && error.code === "rate_limited");
    assert.equal(full.state, "failed");
    assert.equal(client.getSubscription("full"), undefined);
    // An error push about nothing the client knows is still the client's.
    const emitted = nextEvent(client, "error");
    first.connection.send({ op: "error", code: "internal", message: "something else" });
    assert.equal((await emitted).message, "something else");
    assert.deepEqual(
      errors.map((error) => error.message),
      ["something else"],
    );
    assert.equal(notify.state, "subscribing");
  });

  it("unsubscribe() leaves one for this connection; the next connection makes it anew", TEST, async () => {
    const { server, client, subscriptions, first } = await setup([NOTIFY]);
    const notify = await subscriptions.next();
    first.connection.send({ op: "subscribed", room: NOTIFY, offset: 2, epoch: "e1", recovered: false });
    await notify.ready;
    const left = notify.unsubscribe();
    const unsubscribe = await first.connection.next("unsubscribe");
    assert.equal(unsubscribe.room, NOTIFY);
    first.connection.send({ op: "ok", id: unsubscribe.id });
    await left;
    assert.equal(notify.state, "unsubscribed");
    // A late push for it does not bring it back on this connection.
    first.connection.send({ op: "subscribed", room: NOTIFY, offset: 2, epoch: "e1", recovered: false });
    await opsAfterPing(first.connection);
    assert.equal(client.getSubscription(NOTIFY), undefined);

    const second = await reconnect(client, server, first.connection, [NOTIFY]);
    assert.equal("subs" in second.connect, false, "not resumed: the app left it");
    const again = await subscriptions.next();
    assert.notEqual(again, notify);
    assert.equal(client.getSubscription(NOTIFY), again);
  });

  it(
    "a subscribe() of the app's that the server now makes itself is not sent, and the push confirms it",
    TEST,
    async () => {
      let own: Subscription | undefined;
      const { subscriptions, first } = await setup([NOTIFY], (client) => {
        own = client.subscribe(NOTIFY, () => {});
      });
      first.connection.send({ op: "subscribed", room: NOTIFY, offset: 3, epoch: "e1", recovered: false });
      assert.equal((await own?.ready)?.offset, 3);
      assert.equal(own?.serverSide, false);
      assert.deepEqual(await opsAfterPing(first.connection), ["connect", "pong"]);
      assert.deepEqual(subscriptions.unread, [], "the app's own subscription is not announced");
    },
  );
});

describe("the `unsubscribed` push", () => {
  it("ends the app's subscription, which is not sent again after a reconnect", TEST, async () => {
    let sub: Subscription | undefined;
    const { server, client, first } = await setup([], (client) => {
      sub = client.subscribe("chat:1", () => {});
    });
    first.connection.send(subscribedReply(await first.connection.next("subscribe"), {}));
    await sub?.ready;
    const ended = new Promise((resolve) => sub?.once("unsubscribed", resolve));
    first.connection.send({ op: "unsubscribed", room: "chat:1" });
    assert.deepEqual(await ended, { room: "chat:1" });
    assert.equal(sub?.state, "unsubscribed");
    assert.equal(client.getSubscription("chat:1"), undefined);

    const second = await reconnect(client, server, first.connection, []);
    assert.deepEqual(await opsAfterPing(second.connection), ["connect", "pong"]);
  });
});
