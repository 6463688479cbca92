// "History and recovery: no message lost when a client, an instance or Redis
// drops": three real `crier serve` processes share one engine (one real
// redis-server, or a real Redis Cluster: test/support/engines.ts);
// hundreds of SDK clients sit in a room with history while publishers keep
// publishing with sequence numbers. An instance is killed (SIGKILL) and
// restarted, Redis is killed and restarted empty (in a busy room and in a quiet
// one), the backplane connections drop while Redis keeps its data, a client
// stops reading. Every check is about what publishers were acknowledged and
// what each subscriber actually received: every acknowledged message exactly
// once and in order, or an explicit `recovered: false` where history was lost.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import type { JsonValue } from "crier-protocol";
import { Redis } from "ioredis";
import { WebSocket } from "ws";
import { api, type CrierInstance, metric, startCrier } from "../support/crier.js";
import {
  type Ack,
  ackIndex,
  allAcks,
  assertNoProblems,
  contiguityProblem,
  isReady,
  Publisher,
  publishSeries,
  roomPosition,
  sequenceProblem,
} from "../support/delivery.js";
import { ENGINES, type Engine, type EngineKind, type RedisEngine } from "../support/engines.js";
import { RecordingSubscriber } from "../support/sdk-subscriber.js";
import { localPorts } from "../support/sockets.js";
import { waitUntil } from "../support/wait.js";
import { TestClient } from "../support/ws-client.js";

/** Bound of a connection's outbound queue on the instances (the slow-consumer test relies on it). */
const OUTBOUND_QUEUE_BYTES = 262_144;

const CONFIG = {
  namespaces: { chat: { history: { size: 10_000, ttl: "10m" } } },
  limits: { maxConnectionsPerIp: 100_000, commandsPerSecond: 10_000, outboundQueueBytes: OUTBOUND_QUEUE_BYTES },
};

let engine: Engine;
/** The one redis-server of the "redis" engine, for the tests that kill it or cut its connections. */
let redis: RedisEngine["redis"];
/** Set while a test has Redis killed, so a failure half way still leaves Redis running for the next test. */
let redisDown = false;
let dir = "";
const instances: CrierInstance[] = [];
/** SDK clients of the running test, closed after it. */
let subscribers: RecordingSubscriber[] = [];

// ---- helpers ----------------------------------------------------------------------------

/** How many connections Redis has now. */
async function clientCount(admin: Redis): Promise<number> {
  const info = await admin.info("clients");
  return Number(/connected_clients:(\d+)/.exec(info)?.[1]);
}

// ---- clients --------------------------------------------------------------------------

/** `count` SDK clients in `room`, spread round-robin over the instances, all subscribed. */
async function subscribeMany(room: string, count: number): Promise<RecordingSubscriber[]> {
  const group: RecordingSubscriber[] = [];
  for (let i = 0; i < count; i++) {
    const instance = instances[i % instances.length];
    assert.ok(instance);
    group.push(new RecordingSubscriber(instance.url, room));
  }
  subscribers.push(...group);
  const infos = await Promise.all(group.map((subscriber) => subscriber.start()));
  for (const info of infos) assert.equal(typeof info.epoch, "string", "a room with history reports its epoch");
  return group;
}

/** VmRSS of a process, in bytes. */
async function rssOf(pid: number | undefined): Promise<number> {
  assert.ok(pid !== undefined);
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
  assert.ok(kb !== undefined, "no VmRSS in /proc/PID/status");
  return Number(kb) * 1024;
}

const MB = 1024 * 1024;
/** The slow-consumer test: large messages of this many bytes, this many of them to warm up, then this much in total. */
const BIG_PAYLOAD_BYTES = 48 * 1024;
const WARM_UP_MESSAGES = 400;
const SLOW_TEST_BYTES = 100 * MB;
/**
 * Had the instance queued everything for the paused client, it would hold the
 * 100 MB published meanwhile (the frames are encoded once per instance, so the
 * queue would be their only owner) and RSS would grow by at least that. Merely
 * carrying that traffic, with the warm-up behind it, grew RSS by 1-15 MB in our
 * runs (and by about as much with no client paused). A bound at half of what was
 * published leaves room for garbage not yet collected, and fails if even half of
 * it were kept.
 */
const MAX_RSS_GROWTH_BYTES = SLOW_TEST_BYTES / 2;

// ---- the cluster ------------------------------------------------------------------------

function recoveryScenarios(kind: EngineKind): void {
  describe(`history and recovery on ${kind.name}: no message lost when a client, an instance or the engine drops`, () => {
    // Tests of one redis-server's faults, and of the hub alone (slow consumers),
    // run on the redis engine; the cluster's own fault is test/integration/redis-cluster.test.ts.
    const redisOnly = kind.name === "redis" ? test : test.skip;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), "crier-recovery-test-"));
      const config = join(dir, "crier.json");
      await writeFile(config, JSON.stringify(CONFIG));
      engine = await kind.start();
      if (engine.name === "redis") redis = (engine as RedisEngine).redis;
      instances.push(
        ...(await Promise.all(
          ["a", "b", "c"].map((id) =>
            startCrier({ args: [...engine.args, "--node-id", id, "--config", config], logLevel: "info" }),
          ),
        )),
      );
    });

    afterEach(async () => {
      for (const subscriber of subscribers) subscriber.close();
      subscribers = [];
      // A test that failed half way must not leave the next one without its cluster.
      if (redisDown) await redis.restart();
      redisDown = false;
      for (const instance of instances) {
        if (instance.process.exitCode !== null || instance.process.signalCode !== null) await instance.restart();
      }
    });

    after(async () => {
      await Promise.all(instances.splice(0).map((instance) => instance.stop()));
      await engine?.stop();
      if (dir !== "") await rm(dir, { recursive: true, force: true });
    });

    test("an instance is killed and restarted: its clients recover, every subscriber gets every acknowledged message once, in order", async (t) => {
      const [a, b, c] = instances;
      assert.ok(a && b && c);
      const room = `chat:fault-${Date.now()}`;
      const group = await subscribeMany(room, 300);
      const onA = group.filter((_, i) => i % 3 === 0);
      const elsewhere = group.filter((_, i) => i % 3 !== 0);
      const start = group[0]?.subscribed[0];
      assert.ok(start?.epoch !== undefined && start.offset !== undefined);
      const epoch = start.epoch;
      for (const subscriber of group) assert.deepEqual(subscriber.subscribed[0], start, "one position for everyone");

      // Publishing through every instance, including the one that is killed.
      const publishers = [a, b, c].map((instance, i) => new Publisher(i + 1, instance, room));
      let target = Number.POSITIVE_INFINITY;
      const acked = (): number => allAcks(publishers).length;
      const publishing = Promise.all(publishers.map((publisher) => publisher.run(() => acked() >= target)));
      try {
        await waitUntil("300 publications are acknowledged", () => acked() >= 300, 30_000);
        await a.kill("SIGKILL");
        const ackedAtKill = acked();
        await waitUntil(
          "300 more are acknowledged while instance a is down",
          () => acked() >= ackedAtKill + 300,
          30_000,
        );
        await a.restart();
        const ackedAtRestart = acked();
        // Publishing goes on while a's clients reconnect and replay what they missed.
        target = ackedAtRestart + 600;
      } finally {
        if (target === Number.POSITIVE_INFINITY) target = 0;
        await publishing;
      }

      const acks = allAcks(publishers);
      for (const ack of acks) assert.equal(ack.epoch, epoch, "the room keeps its epoch: Redis never restarted");
      const end = await roomPosition(b, room);
      assert.equal(end.epoch, epoch);
      assert.ok(end.offset >= Math.max(...acks.map((ack) => ack.offset)));

      await waitUntil(
        `every subscriber has offset ${end.offset}`,
        () => group.every((subscriber) => subscriber.lastOffset() === end.offset),
        30_000,
      ).catch((error: unknown) => {
        const behind = group.filter((subscriber) => subscriber.lastOffset() !== end.offset);
        const sample = behind
          .slice(0, 5)
          .map((s) => `${s.client.url}: last ${s.lastOffset()}, ${s.received.length} messages, closes ${s.closes}`);
        throw new Error(`${String(error)}; ${behind.length} behind, e.g.\n${sample.join("\n")}`);
      });

      const index = ackIndex(acks);
      const problems: string[] = [];
      for (const [i, subscriber] of group.entries()) {
        const problem =
          contiguityProblem(subscriber.received, start.offset, end.offset, epoch, index) ??
          sequenceProblem(subscriber.received);
        if (problem !== undefined) problems.push(`subscriber ${i} (${subscriber.client.url}): ${problem}`);
      }
      assertNoProblems(problems, "subscribers did not get every message exactly once in order");

      // The killed instance's clients lost their connection and were recovered from history.
      for (const subscriber of onA) {
        assert.ok(subscriber.closes.length >= 1, "a client of the killed instance saw its connection drop");
        const resubscribes = subscriber.subscribed.slice(1);
        assert.ok(resubscribes.length >= 1, "it resubscribed");
        for (const info of resubscribes) assert.equal(info.recovered, true, JSON.stringify(info));
      }
      // Nobody else noticed anything.
      for (const subscriber of elsewhere) {
        assert.deepEqual(subscriber.closes, []);
        assert.equal(subscriber.subscribed.length, 1);
      }
      for (const publisher of publishers) assert.deepEqual(publisher.unexpected, []);
      const [pa, pb, pc] = publishers;
      assert.ok(pa && pb && pc);
      assert.ok(pa.failures.length >= 1, "the publisher on the killed instance saw publishes fail");
      assert.deepEqual([...pb.failures, ...pc.failures], [], "the other instances always answered");
      t.diagnostic(
        `instance kill: ${group.length} subscribers, ${acks.length} acknowledged (${publishers.map((p) => p.acks.length).join("/")}), ` +
          `room at offset ${end.offset}, ${pa.failures.length} failed on the killed instance`,
      );
    });

    redisOnly(
      "Redis is killed and restarts empty: publishes are refused meanwhile, and every subscriber either gets every acknowledged message or is told recovered: false",
      async (t) => {
        const [a, b, c] = instances;
        assert.ok(a && b && c);
        const room = `chat:redis-${Date.now()}`;
        const group = await subscribeMany(room, 300);
        const start = group[0]?.subscribed[0];
        assert.ok(start?.epoch !== undefined && start.offset !== undefined);
        const before = start.epoch;

        const publishers = [a, b, c].map((instance, i) => new Publisher(i + 1, instance, room));
        let target = Number.POSITIVE_INFINITY;
        const ackedIn = (epoch: string | undefined): number =>
          allAcks(publishers).filter((ack) => (epoch === undefined ? ack.epoch !== before : ack.epoch === epoch))
            .length;
        const publishing = Promise.all(
          publishers.map((publisher) => publisher.run(() => ackedIn(undefined) >= target)),
        );
        let killedAt = Number.POSITIVE_INFINITY;
        try {
          await waitUntil("300 publications are acknowledged", () => ackedIn(before) >= 300, 30_000);
          redisDown = true;
          await redis.kill("SIGKILL");
          killedAt = performance.now();
          // Every publisher keeps trying during the outage and must be told `unavailable`.
          await waitUntil("every publisher is refused", () => publishers.every((p) => p.refused >= 1), 10_000);
          // And so is every other publish while Redis is down, on every instance.
          const tries = await Promise.all(
            [a, b, c, a, b, c, a, b, c].map((instance) => api(instance, "/api/publish", { room, data: "during" })),
          );
          for (const reply of tries) {
            assert.equal(reply.status, 503, JSON.stringify(reply.body));
            assert.equal((reply.body as { error?: { code?: unknown } }).error?.code, "unavailable");
          }
          await redis.restart();
          redisDown = false;
          // Publishing goes on (as soon as each instance is ready) while clients are resynchronised.
          target = 600;
        } finally {
          if (target === Number.POSITIVE_INFINITY) target = 0;
          await publishing;
        }

        const acks = allAcks(publishers);
        const oldAcks = acks.filter((ack) => ack.epoch === before);
        const newAcks = acks.filter((ack) => ack.epoch !== before);
        // Nothing was acknowledged while Redis was down: every acknowledgement is either in the old epoch,
        // for a publish sent before Redis died (its answer may come after), or in the one new epoch.
        const late = oldAcks.filter((ack) => ack.sentAt >= killedAt);
        assert.deepEqual(late, [], "publishes sent after the kill acknowledged in the old epoch");
        const end = await roomPosition(b, room);
        assert.notEqual(end.epoch, before, "Redis came back empty: a new epoch");
        for (const ack of newAcks) assert.equal(ack.epoch, end.epoch, "one new epoch");
        for (const publisher of publishers) assert.deepEqual(publisher.unexpected, []);
        for (const publisher of publishers) assert.deepEqual(publisher.failures, [], "the HTTP API always answered");

        // Acknowledged means stored: every publication acknowledged after the restart is in history.
        const history = await api(b, `/api/history?room=${encodeURIComponent(room)}&limit=10000`);
        assert.equal(history.status, 200);
        const stored = new Map(
          (history.body as { messages: { offset: number; data: JsonValue }[] }).messages.map((m) => [m.offset, m.data]),
        );
        for (const ack of newAcks) assert.deepEqual(stored.get(ack.offset), { p: ack.publisher, s: ack.seq });

        // Every subscriber ends at the room's last offset in the new epoch (some start there, after recovered: false).
        await waitUntil(
          `every subscriber is at offset ${end.offset} of the new epoch`,
          () =>
            group.every((s) => {
              const position = s.subscription.position;
              return (
                s.subscription.state === "active" && position?.epoch === end.epoch && position.offset === end.offset
              );
            }),
          30_000,
        ).catch((error: unknown) => {
          const behind = group.filter((s) => s.subscription.position?.offset !== end.offset);
          const sample = behind
            .slice(0, 5)
            .map(
              (s) =>
                `${s.client.url}: ${s.subscription.state} at ${JSON.stringify(s.subscription.position)}, closes ${s.closes}, subscribed ${JSON.stringify(s.subscribed)}`,
            );
          throw new Error(`${String(error)}; ${behind.length} behind, e.g.\n${sample.join("\n")}`);
        });

        const index = ackIndex(acks);
        const problems: string[] = [];
        let toldLost = 0;
        let closedLost = 0;
        let missedOld = 0;
        for (const [i, subscriber] of group.entries()) {
          const who = `subscriber ${i} (${subscriber.client.url})`;
          const sequence = sequenceProblem(subscriber.received);
          if (sequence !== undefined) problems.push(`${who}: ${sequence}`);
          const old = subscriber.received.filter((message) => message.epoch === before);
          const fresh = subscriber.received.filter((message) => message.epoch === end.epoch);
          if (old.length + fresh.length !== subscriber.received.length) {
            problems.push(`${who}: messages under an unknown epoch`);
            continue;
          }
          if (subscriber.received.findIndex((m) => m.epoch === end.epoch) < old.length && fresh.length > 0) {
            problems.push(`${who}: old-epoch messages after new-epoch ones`);
          }
          // Where this subscriber's new epoch began: told so by a `subscribed` with recovered: false,
          // or (had it never been told) at the epoch's very beginning.
          const lost = subscriber.subscribed.find((info) => info.epoch === end.epoch && !info.recovered);
          const newFrom = lost?.offset ?? 0;
          const oldAcked = Math.max(0, ...oldAcks.map((ack) => ack.offset));
          const oldProblem = contiguityProblem(old, start.offset, old.at(-1)?.offset ?? start.offset, before, index);
          if (oldProblem !== undefined) problems.push(`${who}, before the kill: ${oldProblem}`);
          if ((old.at(-1)?.offset ?? start.offset) < oldAcked) {
            if (lost === undefined)
              problems.push(`${who}: missed messages acknowledged before the kill and was not told`);
            else missedOld++;
          }
          const newProblem = contiguityProblem(fresh, newFrom, end.offset, end.epoch, index);
          if (newProblem !== undefined)
            problems.push(`${who}, after the restart (from offset ${newFrom}): ${newProblem}`);
          if (lost !== undefined) {
            toldLost++;
            if (subscriber.closes.includes(4504)) closedLost++;
            if (subscriber.closes.length === 0)
              problems.push(`${who}: told recovered: false without losing its connection`);
          }
        }
        assertNoProblems(problems, "subscribers lost or reordered acknowledged messages");
        const starts = group.map((s) => s.subscribed.find((info) => info.epoch === end.epoch)?.offset ?? 0);
        t.diagnostic(
          `redis restart: new-epoch starting offsets ${Math.min(...starts)}..${Math.max(...starts)}; ` +
            `publishers ${publishers.map((p) => p.acks.length).join("/")}`,
        );
        t.diagnostic(
          `redis restart: ${group.length} subscribers, ${oldAcks.length} acknowledged before the kill, ` +
            `${publishers.map((p) => p.refused).join("/")} refused during the outage, ${newAcks.length} acknowledged after ` +
            `(new epoch up to offset ${end.offset}); ${toldLost} told recovered: false (${closedLost} after a 4504 close), ` +
            `${missedOld} of them missed messages from before the kill; ` +
            `${oldAcks.filter((ack) => ack.answeredAt > killedAt).length} old-epoch acknowledgements arrived after the kill (sent before it)`,
        );
      },
    );

    // A room whose subscribers have seen no live message on their instance yet: the
    // instance used to learn the room's epoch and offset only from the first live
    // message, so it could neither notice the new epoch (offsets up to the old
    // position were dropped as duplicates, later ones delivered as if in the old
    // epoch) nor repair what its backplane connection dropped (a silent gap).
    redisOnly(
      "a quiet room while Redis restarts empty: its subscribers are told recovered: false, not fed a new epoch's offsets",
      async () => {
        const [, b] = instances;
        assert.ok(b);
        const room = `chat:quiet-restart-${Date.now()}`;
        const before = await publishSeries(b, room, 1, 10);
        const group = await subscribeMany(room, 30);
        // Nothing is published between the subscriptions and the restart: no instance has seen a live message here.
        redisDown = true;
        await redis.kill("SIGKILL");
        await redis.restart();
        redisDown = false;
        await waitUntil(
          "every instance is ready again",
          async () => (await Promise.all(instances.map(isReady))).every(Boolean),
          15_000,
        );
        const after = await publishSeries(b, room, 1, 20, 11);
        const epoch = after[0]?.epoch;
        assert.ok(epoch !== undefined && epoch !== before[0]?.epoch, "a new epoch");
        const last = after.at(-1)?.offset ?? 0;
        await waitUntil(
          `every subscriber is at offset ${last}`,
          () => group.every((s) => s.subscription.state === "active" && s.subscription.position?.offset === last),
          15_000,
        );
        const index = ackIndex([...before, ...after]);
        const problems: string[] = [];
        for (const [i, subscriber] of group.entries()) {
          const who = `subscriber ${i} (${subscriber.client.url})`;
          const lost = subscriber.subscribed.find((info) => info.epoch === epoch && !info.recovered);
          const fresh = subscriber.received.filter((message) => message.epoch === epoch);
          const problem =
            subscriber.subscription.position?.epoch !== epoch
              ? `still believes it is in epoch ${subscriber.subscription.position?.epoch}, having received offsets ${JSON.stringify(subscriber.received.map((m) => m.offset))} of the new epoch ${epoch} (told nothing: closes ${JSON.stringify(subscriber.closes)})`
              : contiguityProblem(fresh, lost?.offset ?? 0, last, epoch, index);
          if (problem !== undefined) problems.push(`${who}: ${problem}`);
        }
        assertNoProblems(problems, "subscribers of a quiet room lost messages silently");
      },
    );

    redisOnly(
      "a quiet room while some instances' backplane connections drop: what is published meanwhile through another is repaired from history",
      async (t) => {
        const [a, b, c] = instances;
        assert.ok(a && b && c);
        const cut = [a, c];
        const room = `chat:quiet-blip-${Date.now()}`;
        const before = await publishSeries(b, room, 1, 10);
        const group = await subscribeMany(room, 30);
        const repairedBefore = await Promise.all(cut.map((instance) => metric(instance, "crier_repaired_total")));
        const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
        let acked: Ack[] = [];
        try {
          await admin.connect();
          // Drop A's and C's subscriber connections and keep them from coming back (no connection
          // slot free); their other connections stay up, and B keeps all of its own: B goes on
          // publishing (and delivering to its own clients) while A and C hear nothing.
          const connected = await clientCount(admin);
          const held = await Promise.all(
            cut.map((instance) => {
              assert.ok(instance.process.pid !== undefined);
              return localPorts(instance.process.pid);
            }),
          );
          const ports = new Set(held.flatMap((set) => [...set]));
          const victims = String(await admin.call("CLIENT", "LIST", "TYPE", "pubsub"))
            .trim()
            .split("\n")
            .map((line) => ({ id: /\bid=(\d+)/.exec(line)?.[1], port: Number(/\baddr=[^ ]*:(\d+)/.exec(line)?.[1]) }))
            .filter((client) => ports.has(client.port));
          assert.equal(victims.length, cut.length, "one subscriber connection per cut instance");
          const kill = admin.multi().config("SET", "maxclients", String(connected - victims.length));
          for (const { id } of victims) kill.client("KILL", "ID", String(id));
          await kill.exec();
          await waitUntil(
            "A and C know their backplane is down",
            async () => (await Promise.all(cut.map(isReady))).every((ready) => !ready),
            10_000,
          );
          assert.equal(await isReady(b), true, "B's backplane is up");
          // B's publishes are acknowledged and kept: A and C miss them on the backplane.
          acked = await publishSeries(b, room, 1, 5, 11);
          await admin.config("SET", "maxclients", "10000");
          await waitUntil(
            "every instance is ready again",
            async () => (await Promise.all(instances.map(isReady))).every(Boolean),
            15_000,
          );
        } finally {
          await admin.config("SET", "maxclients", "10000").catch(() => {});
          admin.disconnect();
        }
        acked = [...acked, ...(await publishSeries(b, room, 1, 5, 16))];
        const epoch = before[0]?.epoch;
        assert.ok(epoch !== undefined);
        for (const ack of acked) assert.equal(ack.epoch, epoch, "Redis kept its data: one epoch");
        const end = await roomPosition(b, room);
        await waitUntil(
          `every subscriber is at offset ${end.offset}`,
          () => group.every((s) => s.subscription.state === "active" && s.subscription.position?.offset === end.offset),
          15_000,
        );
        const index = ackIndex([...before, ...acked]);
        const problems: string[] = [];
        for (const [i, subscriber] of group.entries()) {
          // The instance repairs the gap from history itself (docs/protocol.md, "Repair on the server").
          const problem =
            subscriber.closes.length > 0
              ? "its connection was closed"
              : contiguityProblem(subscriber.received, 10, end.offset, epoch, index);
          if (problem !== undefined)
            problems.push(
              `subscriber ${i} (${subscriber.client.url}), closes ${JSON.stringify(subscriber.closes)}: ${problem}`,
            );
        }
        assertNoProblems(problems, "subscribers of a quiet room lost messages silently");
        // A and C heard none of 11..15 live (they had no subscriber connection): each repaired them from history.
        const repairedAfter = await Promise.all(cut.map((instance) => metric(instance, "crier_repaired_total")));
        for (const [i, instance] of cut.entries()) {
          const repaired = (repairedAfter[i] ?? 0) - (repairedBefore[i] ?? 0);
          assert.ok(repaired >= 5, `${instance.nodeId}: repaired ${repaired} of the 5 messages it missed`);
        }
        t.diagnostic(
          `backplane blip on A and C: ${group.length} subscribers at offset 10; 5 publishes through B meanwhile; ` +
            `room at ${end.offset} after, every subscriber has 11..${end.offset}`,
        );
      },
    );

    redisOnly(
      "a client that stops reading is closed with 4503, the server's memory stays bounded, and it recovers on reconnect",
      async (t) => {
        const [, b, c] = instances;
        assert.ok(b && c);
        const stamp = Date.now();
        // Large messages go to a room without history (live delivery, at most once); the room
        // with history gets small ones in between, which the slow client must recover.
        const big = `live:big-${stamp}`;
        const small = `chat:slow-${stamp}`;
        const sockets: WebSocket[] = [];
        class TrackedWebSocket extends WebSocket {
          constructor(url: string, protocols?: string | string[]) {
            super(url, protocols);
            sockets.push(this);
          }
        }
        const slow = new RecordingSubscriber(c.url, big, { WebSocket: TrackedWebSocket });
        const slowSmall = slow.join(small);
        const fast = new RecordingSubscriber(c.url, big);
        const fastSmall = fast.join(small);
        subscribers.push(slow, fast);
        await Promise.all([slow.start(), fast.start()]);
        const socket = sockets.at(-1);
        assert.ok(socket !== undefined && sockets.length === 1);
        const tcp = (socket as unknown as { _socket: Socket })._socket;

        const pad = "x".repeat(BIG_PAYLOAD_BYTES);
        let bigSeq = 0;
        let smallSeq = 0;
        const publishBig = async (): Promise<void> => {
          const reply = await api(b, "/api/publish", { room: big, data: { p: 1, s: ++bigSeq, pad } });
          assert.equal(reply.status, 200, JSON.stringify(reply.body));
        };
        const publishSmall = async (): Promise<void> => {
          const reply = await api(b, "/api/publish", { room: small, data: { p: 2, s: ++smallSeq } });
          assert.equal(reply.status, 200, JSON.stringify(reply.body));
        };

        // Warm-up, both clients reading, so the baseline is a server that has already carried large messages.
        for (let i = 0; i < WARM_UP_MESSAGES; i++) await publishBig();
        await waitUntil(
          "both clients have the warm-up",
          () => slow.received.length === bigSeq && fast.received.length === bigSeq,
          10_000,
        );
        const pid = c.process.pid;
        const baseline = await rssOf(pid);
        let peak = baseline;
        const sampler = setInterval(() => {
          rssOf(pid).then(
            (rss) => {
              peak = Math.max(peak, rss);
            },
            () => {},
          );
        }, 25);

        tcp.pause();
        let published = 0;
        try {
          while (published < SLOW_TEST_BYTES) {
            await publishBig();
            published += BIG_PAYLOAD_BYTES;
            if (bigSeq % 5 === 0) await publishSmall();
          }
          await waitUntil(
            "the reading client has everything",
            () => fast.received.length === bigSeq && fastSmall.received.length === smallSeq,
            30_000,
          );
          peak = Math.max(peak, await rssOf(pid));
        } finally {
          clearInterval(sampler);
        }
        const growth = peak - baseline;
        t.diagnostic(
          `slow consumer: ${(published / MB).toFixed(1)} MB in ${bigSeq - WARM_UP_MESSAGES} large messages while paused; ` +
            `RSS of the instance ${(baseline / MB).toFixed(1)} MB before, peak ${(peak / MB).toFixed(1)} MB (+${(growth / MB).toFixed(1)} MB)`,
        );
        assert.ok(growth < MAX_RSS_GROWTH_BYTES, `RSS grew by ${(growth / MB).toFixed(1)} MB`);
        assert.deepEqual(slow.closes, [], "the paused client has not read its close yet");

        let smallBeforeClose = -1;
        slow.client.once("disconnected", () => {
          smallBeforeClose = slowSmall.received.length;
        });
        tcp.resume();
        // What the kernel and the bounded queue held, then the close, then a reconnect and a resubscribe with `since`.
        await waitUntil("the slow client reads its 4503", () => slow.closes.length > 0, 10_000);
        assert.equal(slow.closes[0], 4503, `closed with ${slow.closes[0]}`);
        const end = await roomPosition(b, small);
        await waitUntil(
          "the slow client has recovered the room with history",
          () => slowSmall.subscribed.length >= 2 && slowSmall.lastOffset() === end.offset,
          10_000,
        );

        // The room with history: every message exactly once, in order, recovered: true.
        const first = slowSmall.subscribed[0];
        assert.ok(first?.offset !== undefined && first.epoch !== undefined);
        for (const info of slowSmall.subscribed.slice(1)) assert.equal(info.recovered, true, JSON.stringify(info));
        const none = new Map<string, Ack>();
        for (const [who, log] of [
          ["slow", slowSmall],
          ["fast", fastSmall],
        ] as const) {
          const problem: string | undefined =
            contiguityProblem(log.received, first.offset, end.offset, first.epoch, none) ??
            sequenceProblem(log.received);
          assert.equal(problem, undefined, `${who} client in ${small}: ${problem}`);
        }
        // The room without history: at most once, in order; the slow client missed what came after its close.
        assert.equal(sequenceProblem(slow.received), undefined);
        assert.ok(slow.received.length < bigSeq, "the slow client was cut off, not buffered without bound");
        assert.equal(sequenceProblem(fast.received), undefined);
        assert.equal(fast.received.length, bigSeq);
        assert.deepEqual(fast.closes, [], "a reading client on the same instance is not affected");
        t.diagnostic(
          `slow consumer: it had ${slow.received.length - WARM_UP_MESSAGES} large messages queued (kernel buffers and the ` +
            `${OUTBOUND_QUEUE_BYTES}-byte queue) before its 4503; it recovered ${slowSmall.received.length - smallBeforeClose} of ${end.offset - first.offset} small messages from history`,
        );
      },
    );

    // The replay after `subscribed` is paced by the socket draining, page by page
    // from history: a client that reads is never closed as a slow consumer for
    // being far behind.
    redisOnly("a client more than outboundQueueBytes behind recovers on resubscribe", async () => {
      const [, , c] = instances;
      assert.ok(c);
      const room = `chat:replay-${Date.now()}`;
      // 1200 messages of 1 KiB: over four queues' worth, and three history pages (500 each).
      const pad = "x".repeat(1024);
      let epoch = "";
      const count = 1200;
      for (let s = 1; s <= count; s++) {
        const reply = await api(c, "/api/publish", { room, data: { p: 1, s, pad } });
        assert.equal(reply.status, 200);
        epoch = (reply.body as { epoch: string }).epoch;
      }
      const client = await TestClient.connect(c.url);
      try {
        const reply = await client.call({ op: "subscribe", room, since: { offset: 0, epoch } });
        assert.equal(reply.op, "subscribed");
        await waitUntil(
          `${count} replayed messages, or a close`,
          () => client.all("message").length === count || client.ws.readyState !== WebSocket.OPEN,
          10_000,
        );
        assert.equal(client.ws.readyState, WebSocket.OPEN, `closed with ${JSON.stringify(await client.closed)}`);
        const offsets = client.all("message").map((m) => (m.op === "message" ? m.offset : -1));
        assert.deepEqual(
          offsets,
          Array.from({ length: count }, (_, i) => i + 1),
          "every offset once, in order",
        );
      } finally {
        client.close();
      }
    });
  });
}

for (const kind of ENGINES) recoveryScenarios(kind);
