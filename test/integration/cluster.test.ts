// "Redis backplane: many instances, one cluster": three real `crier serve`
// processes share one engine (test/support/engines.ts: one real redis-server,
// or a real Redis Cluster; each engine gets the same scenarios). Clients on different instances reach
// each other's rooms and users, every subscriber sees one order per room, an
// instance hears nothing of rooms it has no member in, and the cluster rides out
// Redis and instances dying (SIGKILL) without dropping clients or faking success.

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import type { JsonValue, ServerFrame } from "crier-protocol";
import { WebSocket } from "ws";
import { nodeKeyPrefix } from "../../packages/server/src/cluster/redis.js";
import { api, type CrierInstance, metric, startCrier } from "../support/crier.js";
import { ENGINES, type Engine, type EngineKind, type RedisEngine } from "../support/engines.js";
import { JWT_SECRET, token } from "../support/tokens.js";
import { waitUntil } from "../support/wait.js";
import { type Closed, TestClient } from "../support/ws-client.js";

/** Short membership timings, so a killed instance drops out of /api/info quickly. */
const HEARTBEAT_S = 0.2;
const NODE_TIMEOUT_S = 1;

let engine: Engine;
let dir = "";
let a: CrierInstance;
let b: CrierInstance;
let c: CrierInstance;
const instances: CrierInstance[] = [];

/** Clients of the running test; closed after each test so one test's rooms never leak into the next. */
let clients: TestClient[] = [];
/** How each client's connection ended, as soon as it did. */
const closes = new Map<TestClient, Closed>();

// ---- helpers --------------------------------------------------------------------

/** Connects to `instance` as `user` (a signed token) and answers the server's pings, as any real client does. */
async function connectAs(instance: CrierInstance, user: string): Promise<TestClient> {
  const client = await TestClient.connect(instance.url, { token: await token({ sub: user }) });
  clients.push(client);
  void client.closed.then((closed) => closes.set(client, closed));
  client.ws.on("message", (data) => {
    if (String(data) === '{"op":"ping"}') client.send({ op: "pong" });
  });
  return client;
}

async function subscribe(client: TestClient, room: string): Promise<void> {
  const reply = await client.call({ op: "subscribe", room });
  assert.equal(reply.op, "subscribed", `subscribe to ${room}: ${JSON.stringify(reply)}`);
}

/** The `message` pushes of `room` this client received so far, in order. */
function messagesIn(client: TestClient, room: string): Array<{ data: JsonValue; from?: string; offset?: number }> {
  const out: Array<{ data: JsonValue; from?: string; offset?: number }> = [];
  for (const frame of client.frames) if (frame.op === "message" && frame.room === room) out.push(frame);
  return out;
}

function directs(client: TestClient): Array<{ data: JsonValue; from?: string }> {
  const out: Array<{ data: JsonValue; from?: string }> = [];
  for (const frame of client.frames) if (frame.op === "direct") out.push(frame);
  return out;
}

function isMessage(room: string, data: JsonValue): (frame: ServerFrame) => boolean {
  const text = JSON.stringify(data);
  return (frame) => frame.op === "message" && frame.room === room && JSON.stringify(frame.data) === text;
}

function isDirect(data: JsonValue): (frame: ServerFrame) => boolean {
  const text = JSON.stringify(data);
  return (frame) => frame.op === "direct" && JSON.stringify(frame.data) === text;
}

/** Resolves once every client has received the message (already or from now on). */
async function allReceive(receivers: TestClient[], room: string, data: JsonValue, timeoutMs = 5000): Promise<void> {
  await Promise.all(
    receivers.map((client) => client.seen(isMessage(room, data), `${JSON.stringify(data)} in ${room}`, timeoutMs)),
  );
}

async function readyStatus(instance: CrierInstance): Promise<number> {
  return (await api(instance, "/readyz", undefined, { apiKey: null })).status;
}

async function clusterNodeIds(instance: CrierInstance): Promise<string[]> {
  const reply = await api(instance, "/api/info");
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  const body = reply.body as { nodes?: Array<{ id?: unknown }> };
  return (body.nodes ?? []).map((node) => String(node.id)).sort();
}

/** One command on the engine's Redis (routed by its key on the cluster); its reply as text. */
async function redisCli(...args: string[]): Promise<string> {
  if (engine.redisCommand === undefined) throw new Error(`${engine.name} is not a Redis engine`);
  return String(await engine.redisCommand(...args));
}

/** Where instance `id`'s membership entry lives on this engine. */
function nodeKey(id: string): string {
  return `${nodeKeyPrefix("crier:", engine.name === "redis-cluster")}${id}`;
}

/** PUBSUB NUMSUB (SHARDNUMSUB on the cluster) of a room's channel: how many instances listen to it (one connection each). */
async function numsub(room: string): Promise<number> {
  return engine.subscribers(engine.names.room(room));
}

function errorCodeOf(body: unknown): unknown {
  return (body as { error?: { code?: unknown } } | undefined)?.error?.code;
}

/** Every client is still open and none saw a close frame. */
function assertAllOpen(group: TestClient[]): void {
  for (const [index, client] of group.entries()) {
    assert.equal(closes.get(client), undefined, `client ${index} was closed: ${JSON.stringify(closes.get(client))}`);
    assert.equal(client.ws.readyState, WebSocket.OPEN, `client ${index} is no longer open`);
  }
}

// ---- the cluster ----------------------------------------------------------------

function clusterScenarios(kind: EngineKind): void {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "crier-cluster-test-"));
    const config = join(dir, "crier.json");
    await writeFile(
      config,
      JSON.stringify({
        cluster: { heartbeat: HEARTBEAT_S, nodeTimeout: NODE_TIMEOUT_S },
        // The ordering test publishes hundreds of messages per connection at once.
        limits: { commandsPerSecond: 10_000 },
        namespaces: { log: { history: { size: 1000, ttl: "10m" } } },
      }),
    );
    engine = await kind.start();
    const start = async (id: string): Promise<CrierInstance> => {
      const instance = await startCrier({
        args: ["--config", config, ...engine.args, "--node-id", id, "--jwt-secret", JWT_SECRET],
      });
      instances.push(instance);
      return instance;
    };
    [a, b, c] = await Promise.all([start("a"), start("b"), start("c")]);
  });

  afterEach(() => {
    for (const client of clients) client.ws.terminate();
    clients = [];
  });

  after(async () => {
    for (const client of clients) client.ws.terminate();
    await Promise.all(instances.splice(0).map((instance) => instance.kill("SIGKILL")));
    await engine?.stop();
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  describe(`a cluster of three instances over ${kind.name}`, { timeout: 60_000 }, () => {
    test("a publication on A reaches subscribers on A, B and C, the publisher included", async () => {
      const room = "lobby";
      const onA = await connectAs(a, "alice");
      const onB = await connectAs(b, "bob");
      const onC = await connectAs(c, "carol");
      for (const client of [onA, onB, onC]) await subscribe(client, room);
      const everyone = [onA, onB, onC];

      const reply = await onA.call({ op: "publish", room, data: { text: "hello from a" } });
      // A room without history: a plain ok, no offset.
      assert.equal(reply.op, "ok", JSON.stringify(reply));
      assert.equal("offset" in reply, false, JSON.stringify(reply));
      await allReceive(everyone, room, { text: "hello from a" });
      for (const client of everyone) {
        assert.equal(messagesIn(client, room)[0]?.from, "alice", "the publisher's user travels with the message");
      }

      // Every instance can be the origin: from B by a client, from C through the HTTP API.
      assert.equal((await onB.call({ op: "publish", room, data: { text: "hello from b" } })).op, "ok");
      await allReceive(everyone, room, { text: "hello from b" });
      const published = await api(c, "/api/publish", { room, data: { text: "hello from the backend" } });
      assert.equal(published.status, 200, JSON.stringify(published.body));
      await allReceive(everyone, room, { text: "hello from the backend" });

      for (const client of everyone) {
        const received = messagesIn(client, room);
        assert.deepEqual(
          received.map((message) => message.data),
          [{ text: "hello from a" }, { text: "hello from b" }, { text: "hello from the backend" }],
          "each publication arrives exactly once",
        );
        assert.equal(received[2]?.from, undefined, "a backend publication has no 'from'");
      }
    });

    test("send to a user reaches that user's connections on two instances, from a client and from the HTTP API", async () => {
      const doraOnA = await connectAs(a, "dora");
      const doraOnB = await connectAs(b, "dora");
      const bystanderOnA = await connectAs(a, "frank");
      const eveOnC = await connectAs(c, "eve");

      const reply = await eveOnC.call({ op: "send", user: "dora", data: { note: "from eve" } });
      assert.equal(reply.op, "ok", JSON.stringify(reply));
      for (const dora of [doraOnA, doraOnB]) {
        const direct = await dora.seen(isDirect({ note: "from eve" }), "eve's direct message");
        assert.equal(direct.op === "direct" ? direct.from : undefined, "eve");
      }

      const sent = await api(c, "/api/send", { user: "dora", data: { note: "from the backend" } });
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
      assert.deepEqual(sent.body, {});
      for (const dora of [doraOnA, doraOnB]) {
        const direct = await dora.seen(isDirect({ note: "from the backend" }), "the backend's direct message");
        assert.equal(direct.op === "direct" ? direct.from : undefined, undefined);
      }

      // A direct message to frank, sent last, is the barrier: once it is in, anything
      // meant for dora that leaked to him would be in too.
      assert.equal((await api(c, "/api/send", { user: "frank", data: { note: "for frank" } })).status, 200);
      await bystanderOnA.seen(isDirect({ note: "for frank" }), "frank's own direct message");
      assert.deepEqual(
        directs(bystanderOnA).map((direct) => direct.data),
        [{ note: "for frank" }],
      );
      for (const dora of [doraOnA, doraOnB]) assert.equal(directs(dora).length, 2, "dora got each message once");
      // And one to eve, sent after hers to dora, is the barrier for her own.
      assert.equal((await api(c, "/api/send", { user: "eve", data: { note: "for eve" } })).status, 200);
      await eveOnC.seen(isDirect({ note: "for eve" }), "eve's own direct message");
      assert.deepEqual(
        directs(eveOnC).map((direct) => direct.data),
        [{ note: "for eve" }],
        "the sender does not get its own direct message",
      );
    });

    test("POST /api/broadcast reaches several rooms with members on different instances", async () => {
      const onA = await connectAs(a, "gus");
      const onB = await connectAs(b, "hana");
      const onC = await connectAs(c, "ivan");
      await subscribe(onA, "news:1");
      await subscribe(onB, "news:2");
      await subscribe(onC, "news:3");
      await subscribe(onA, "news:3");

      const rooms = ["news:1", "news:2", "news:3"];
      const reply = await api(b, "/api/broadcast", { rooms, data: { headline: "extra" } });
      assert.equal(reply.status, 200, JSON.stringify(reply.body));
      const results = (reply.body as { results?: Array<{ room?: unknown }> }).results ?? [];
      assert.deepEqual(
        results.map((result) => result.room),
        rooms,
      );

      await allReceive([onA], "news:1", { headline: "extra" });
      await allReceive([onB], "news:2", { headline: "extra" });
      await allReceive([onC, onA], "news:3", { headline: "extra" });

      // A second broadcast, to news:3 and news:2, is the barrier on every client's own connection
      // for "exactly once, nowhere else".
      const end = await api(b, "/api/broadcast", { rooms: ["news:3", "news:2"], data: { headline: "end" } });
      assert.equal(end.status, 200);
      await allReceive([onC, onA], "news:3", { headline: "end" });
      await allReceive([onB], "news:2", { headline: "end" });
      const headlines = (client: TestClient, room: string): JsonValue[] =>
        messagesIn(client, room).map((message) => message.data);
      assert.deepEqual(headlines(onA, "news:1"), [{ headline: "extra" }]);
      assert.deepEqual(headlines(onA, "news:3"), [{ headline: "extra" }, { headline: "end" }]);
      assert.deepEqual(headlines(onB, "news:2"), [{ headline: "extra" }, { headline: "end" }]);
      assert.deepEqual(headlines(onB, "news:3"), [], "hana is not in news:3");
      assert.deepEqual(headlines(onC, "news:3"), [{ headline: "extra" }, { headline: "end" }]);
    });

    for (const room of ["race", "log:race"]) {
      const withHistory = room.startsWith("log:");
      test(`concurrent publishers on three instances: every subscriber sees the same order in ${withHistory ? "a room with history" : "a room"}`, async () => {
        const PER_PUBLISHER = 200;
        const publishers = [await connectAs(a, "pa"), await connectAs(b, "pb"), await connectAs(c, "pc")];
        const listeners = [await connectAs(a, "la"), await connectAs(b, "lb"), await connectAs(c, "lc")];
        const subscribers = [...publishers, ...listeners];
        for (const client of subscribers) await subscribe(client, room);

        // Each publisher fires all of its publishes without waiting for acks; the
        // three bursts run at the same time.
        const names = ["a", "b", "c"];
        const acks = await Promise.all(
          publishers.map((publisher, p) =>
            Promise.all(
              Array.from({ length: PER_PUBLISHER }, (_, n) =>
                publisher.call({ op: "publish", room, data: { p: names[p] ?? "?", n } }, 15_000),
              ),
            ),
          ),
        );
        for (const reply of acks.flat()) assert.equal(reply.op, "ok", JSON.stringify(reply));

        const total = PER_PUBLISHER * publishers.length;
        await waitUntil(
          `all ${subscribers.length} subscribers have ${total} messages`,
          () => subscribers.every((client) => messagesIn(client, room).length >= total),
          15_000,
        );

        const reference = messagesIn(subscribers[0] as TestClient, room);
        for (const [index, client] of subscribers.entries()) {
          const received = messagesIn(client, room);
          assert.equal(received.length, total, `subscriber ${index}: no duplicates`);
          for (const name of names) {
            const sequence = received
              .map((message) => message.data as { p: string; n: number })
              .filter((data) => data.p === name)
              .map((data) => data.n);
            assert.deepEqual(
              sequence,
              Array.from({ length: PER_PUBLISHER }, (_, n) => n),
              `subscriber ${index}: publisher ${name}'s messages all arrive, in the order sent`,
            );
          }
          assert.deepEqual(received, reference, `subscriber ${index} saw the same total order as subscriber 0`);
        }

        if (withHistory) {
          // Offsets are the room's order: 1, 2, 3 … for everyone, and the acks carry the same ones.
          const offsets = reference.map((message) => message.offset);
          assert.deepEqual(
            offsets,
            Array.from({ length: total }, (_, i) => i + 1),
          );
          const acked = acks
            .flat()
            .map((reply) => (reply.op === "ok" ? reply.offset : undefined))
            .sort((x, y) => (x ?? 0) - (y ?? 0));
          assert.deepEqual(acked, offsets);
        }
      });
    }

    test("an instance subscribes to a room's channel only while it has a member there", async () => {
      const room = "only-on-a";
      const channel = engine.names.room(room);
      const first = await connectAs(a, "quinn");
      const second = await connectAs(a, "rosa");
      // B hosts a client, just not a member of this room: nothing of the room may reach B.
      const onB = await connectAs(b, "sam");
      await subscribe(onB, "elsewhere");
      await subscribe(first, room);
      await subscribe(second, room);

      assert.equal(await numsub(room), 1, "only A's subscriber connection listens to the room");
      const receivedBefore = await Promise.all(
        [b, c].map((instance) => metric(instance, "crier_broker_received_total")),
      );
      for (const origin of [a, b, c]) {
        const reply = await api(origin, "/api/publish", { room, data: { from: origin.nodeId ?? "?" } });
        assert.equal(reply.status, 200, JSON.stringify(reply.body));
      }
      await allReceive([first, second], room, { from: "c" });
      assert.equal(messagesIn(first, room).length, 3);
      // B and C received nothing from the backplane at all, by their own counters.
      const receivedAfter = await Promise.all(
        [b, c].map((instance) => metric(instance, "crier_broker_received_total")),
      );
      assert.deepEqual(receivedAfter, receivedBefore, "instances without members received no envelope");
      assert.equal(await numsub(room), 1);
      assert.equal(
        onB.frames.filter((frame) => frame.op === "message").length,
        0,
        "nothing of the room reached the client on B",
      );

      // The last member leaving (one by unsubscribe, the other by disconnecting) ends A's subscription.
      assert.equal((await first.call({ op: "unsubscribe", room })).op, "ok");
      assert.equal(await numsub(room), 1, "rosa is still in the room on A");
      second.close();
      await second.waitClosed();
      await waitUntil(`PUBSUB NUMSUB ${channel} is 0`, async () => (await numsub(room)) === 0);

      // A member arriving on B subscribes B, and messages flow to it.
      await subscribe(onB, room);
      assert.equal(await numsub(room), 1);
      assert.equal((await api(a, "/api/publish", { room, data: { back: true } })).status, 200);
      await allReceive([onB], room, { back: true });
    });

    test("/api/disconnect on A closes the user's connections on B and C with the given code, or one client by id", async () => {
      const ginaOnB = await connectAs(b, "gina");
      const ginaOnC = await connectAs(c, "gina");
      const bystanderOnB = await connectAs(b, "hugo");

      const reply = await api(a, "/api/disconnect", { user: "gina", code: 4321, reason: "account suspended" });
      assert.equal(reply.status, 200, JSON.stringify(reply.body));
      for (const gina of [ginaOnB, ginaOnC]) {
        assert.deepEqual(await gina.waitClosed(), { code: 4321, reason: "account suspended" });
      }

      // hugo, on the same instance, is untouched and still served.
      assert.equal((await api(a, "/api/send", { user: "hugo", data: "still here" })).status, 200);
      await bystanderOnB.seen(isDirect("still here"), "hugo's direct message");
      assertAllOpen([bystanderOnB]);

      // One connection, by client id, is found on whichever instance holds it.
      const hugoOnC = await connectAs(c, "hugo");
      const connected = hugoOnC.frames.find((frame) => frame.op === "connected");
      assert.ok(connected?.op === "connected");
      const byClient = await api(a, "/api/disconnect", {
        client: connected.client,
        code: 4444,
        reason: "just this one",
      });
      assert.equal(byClient.status, 200, JSON.stringify(byClient.body));
      assert.deepEqual(await hugoOnC.waitClosed(), { code: 4444, reason: "just this one" });
      // Barrier: a direct message to hugo sent after the disconnect reaches his other connection.
      assert.equal((await api(a, "/api/send", { user: "hugo", data: "still here, on B" })).status, 200);
      await bystanderOnB.seen(isDirect("still here, on B"), "hugo's second direct message");
      assertAllOpen([bystanderOnB]);
    });

    test("/api/unsubscribe on A ends the user's subscription on B: an 'unsubscribed' push, then nothing more", async () => {
      const room = "briefing";
      const hank = await connectAs(b, "hank");
      const ivy = await connectAs(b, "ivy");
      await subscribe(hank, room);
      await subscribe(hank, "other");
      await subscribe(ivy, room);

      const reply = await api(a, "/api/unsubscribe", { user: "hank", room });
      assert.equal(reply.status, 200, JSON.stringify(reply.body));
      assert.deepEqual(await hank.seen((frame) => frame.op === "unsubscribed", "the 'unsubscribed' push"), {
        op: "unsubscribed",
        room,
      });

      assert.equal((await api(a, "/api/publish", { room, data: "after" })).status, 200);
      await allReceive([ivy], room, "after");
      // Published after "after" on the same Redis connection, so it reaches B after it.
      assert.equal((await api(a, "/api/publish", { room: "other", data: "barrier" })).status, 200);
      await allReceive([hank], "other", "barrier");
      assert.equal(messagesIn(hank, room).length, 0, "hank gets nothing of the room after 'unsubscribed'");

      // The server forgot the subscription too: unsubscribing again is an error, subscribing again works.
      const again = await hank.call({ op: "unsubscribe", room });
      assert.equal(again.op === "error" ? again.code : again.op, "not_subscribed");
      await subscribe(hank, room);
      assertAllOpen([hank, ivy]);
    });

    // On the cluster, a master killed during traffic is test/integration/redis-cluster.test.ts.
    (kind.name === "redis" ? test : test.skip)(
      "Redis killed and restarted: clients stay connected, publishes are refused meanwhile, delivery resumes",
      async () => {
        const room = "outage";
        const subscribers = [
          await connectAs(a, "uma"),
          await connectAs(b, "vic"),
          await connectAs(c, "wes"),
          await connectAs(a, "xena"),
        ];
        const xenaOnC = await connectAs(c, "xena");
        const everyone = [...subscribers, xenaOnC];
        for (const client of subscribers) await subscribe(client, room);
        const [umaOnA, vicOnB, wesOnC] = subscribers as [TestClient, TestClient, TestClient, TestClient];
        assert.equal((await umaOnA.call({ op: "publish", room, data: "before" })).op, "ok");
        await allReceive(subscribers, room, "before");

        const { redis } = engine as RedisEngine;
        await redis.kill("SIGKILL");
        try {
          for (const instance of [a, b, c]) {
            await waitUntil(`/readyz of ${instance.nodeId} is 503`, async () => (await readyStatus(instance)) === 503);
          }

          // Never a false ok: every way of publishing says `unavailable`.
          const refused = await vicOnB.call({ op: "publish", room, data: "during (ws)" });
          assert.equal(refused.op === "error" ? refused.code : JSON.stringify(refused), "unavailable");
          const sendRefused = await wesOnC.call({ op: "send", user: "xena", data: "during (ws send)" });
          assert.equal(sendRefused.op === "error" ? sendRefused.code : JSON.stringify(sendRefused), "unavailable");
          for (const instance of [a, b, c]) {
            const http = await api(instance, "/api/publish", { room, data: "during (http)" });
            assert.equal(http.status, 503, JSON.stringify(http.body));
            assert.equal(errorCodeOf(http.body), "unavailable");
          }
          const historyRefused = await api(a, "/api/publish", { room: "log:outage", data: "during (history)" });
          assert.equal(historyRefused.status, 503, JSON.stringify(historyRefused.body));
          assert.equal(errorCodeOf(historyRefused.body), "unavailable");
          const sendHttp = await api(b, "/api/send", { user: "xena", data: "during (http send)" });
          assert.equal(sendHttp.status, 503, JSON.stringify(sendHttp.body));
          assert.equal(errorCodeOf(sendHttp.body), "unavailable");
          assertAllOpen(everyone);
        } finally {
          // Also when an assertion failed, so the tests after this one get their Redis back.
          await redis.restart();
        }

        for (const instance of [a, b, c]) {
          await waitUntil(
            `/readyz of ${instance.nodeId} is 200 again`,
            async () => (await readyStatus(instance)) === 200,
            15_000,
          );
        }

        // Ready means resubscribed: a single probe published after readiness reaches every
        // subscriber with no action by any client; room and user channels work again.
        assert.equal((await api(c, "/api/publish", { room, data: "probe" })).status, 200);
        await allReceive(subscribers, room, "probe");
        assert.equal((await wesOnC.call({ op: "publish", room, data: "after (ws)" })).op, "ok");
        await allReceive(subscribers, room, "after (ws)");
        assert.equal((await vicOnB.call({ op: "send", user: "xena", data: "after (send)" })).op, "ok");
        for (const xena of [subscribers[3] as TestClient, xenaOnC]) {
          await xena.seen(isDirect("after (send)"), "xena's direct message after the restart");
        }

        assertAllOpen(everyone);
        for (const client of subscribers) {
          assert.deepEqual(
            messagesIn(client, room).map((message) => message.data),
            ["before", "probe", "after (ws)"],
            "nothing refused during the outage was delivered later",
          );
        }
        for (const client of everyone) {
          assert.deepEqual(
            directs(client).map((direct) => direct.data),
            client === umaOnA || client === vicOnB || client === wesOnC ? [] : ["after (send)"],
          );
        }
      },
    );

    test("an instance killed with SIGKILL: the others keep serving and it drops out of /api/info", async () => {
      const room = "survivors";
      // After the Redis restart the heartbeats put every instance back on the list.
      await waitUntil("A lists a, b and c", async () => (await clusterNodeIds(a)).join() === "a,b,c");
      assert.deepEqual(await clusterNodeIds(b), ["a", "b", "c"]);

      const onA = await connectAs(a, "yara");
      const onB = await connectAs(b, "zack");
      const onC = await connectAs(c, "otto");
      for (const client of [onA, onB, onC]) await subscribe(client, room);
      assert.equal(await numsub(room), 3);

      await c.kill("SIGKILL");
      // Nothing renews c's entry now, and Redis expires it within cluster.nodeTimeout of
      // its last heartbeat (by Redis's clock, not this machine's load): -2 if already gone.
      // (On NATS the entry's TTL is the KV bucket's: cluster/nats.test.ts checks it.)
      const redisEngine = engine.redisCommand !== undefined;
      if (redisEngine) {
        const ttl = Number(await redisCli("PTTL", nodeKey("c")));
        assert.ok(ttl === -2 || (ttl > 0 && ttl <= NODE_TIMEOUT_S * 1000), `c's entry expires in ${ttl} ms`);
      }
      await waitUntil(
        "/api/info on A no longer lists c",
        async () => (await clusterNodeIds(a)).join() === "a,b",
        NODE_TIMEOUT_S * 1000 + 10_000,
      );
      if (redisEngine) {
        assert.equal(await redisCli("EXISTS", nodeKey("c")), "0", "c dropped out because its entry expired");
      }
      assert.deepEqual(await clusterNodeIds(b), ["a", "b"]);
      await onC.waitClosed();
      await waitUntil("Redis dropped c's subscription", async () => (await numsub(room)) === 2);

      // The survivors exchange room messages both ways, and direct messages.
      assert.equal((await onA.call({ op: "publish", room, data: "a to b" })).op, "ok");
      await allReceive([onA, onB], room, "a to b");
      assert.equal((await onB.call({ op: "publish", room, data: "b to a" })).op, "ok");
      await allReceive([onA, onB], room, "b to a");
      assert.equal((await onB.call({ op: "send", user: "yara", data: "direct b to a" })).op, "ok");
      await onA.seen(isDirect("direct b to a"), "the direct message from B");
      // And take new clients and subscriptions.
      const late = await connectAs(b, "lena");
      await subscribe(late, room);
      assert.equal((await api(a, "/api/publish", { room, data: "for all survivors" })).status, 200);
      await allReceive([onA, onB, late], room, "for all survivors");
      for (const instance of [a, b]) assert.equal(await readyStatus(instance), 200);
      assertAllOpen([onA, onB, late]);
    });
  });
}

for (const kind of ENGINES) describe(`engine: ${kind.name}`, () => clusterScenarios(kind));
