// The history contract (docs/protocol.md "Delivery semantics"), run against
// every engine that keeps history: appends through its broker (Broker.append),
// reads through its HistoryStore; the same tests, so the embedded memory
// engine, Redis and NATS (JetStream) number, retain and recover the same way.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { ProtocolError, type StreamPosition } from "crier-protocol";
import { Collector } from "../../../../test/support/collector.js";
import { type NatsProcess, startNats } from "../../../../test/support/nats.js";
import { type RedisProcess, startRedis } from "../../../../test/support/redis.js";
import { type RedisClusterProcess, startRedisCluster } from "../../../../test/support/redis-cluster.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { type Broker, ChannelNames } from "../broker/broker.js";
import type { Envelope } from "../broker/envelope.js";
import { MemoryBroker } from "../broker/memory.js";
import { NatsBroker } from "../broker/nats.js";
import { RedisBroker } from "../broker/redis.js";
import { NatsLink } from "../nats/connection.js";
import type { HistoryOptions, HistoryRead, HistoryStore, ReadOptions } from "./history.js";
import { NatsHistory } from "./nats.js";
import { RedisHistory } from "./redis.js";

/** What a broker delivered on one channel; waits for deliveries by event, with a deadline. */
class Inbox extends Collector<Envelope> {
  get envelopes(): readonly Envelope[] {
    return this.items;
  }
}

/** One instance's view of an engine's history: append+publish through its broker, reads through its store. */
interface EngineHistory {
  publish(room: string, channel: string, envelope: Envelope, options: HistoryOptions): Promise<StreamPosition>;
  read(room: string, options: ReadOptions & { ttlMs: number }): Promise<HistoryRead>;
  close(): Promise<void>;
}

function engineHistory(broker: Broker, store: HistoryStore): EngineHistory {
  return {
    publish(room, channel, envelope, options) {
      if (broker.append === undefined) throw new Error("this broker keeps no history");
      return broker.append(channel, envelope, { room, ...options });
    },
    read: (room, options) => store.read(room, options),
    async close() {
      await Promise.all([broker.close(), store.close()]);
    },
  };
}

/** The engines one test uses, on a backing shared the way separate crier instances would share it. */
interface World {
  store: EngineHistory;
  /** Another instance's view on the same backing (for memory, one process: the same engine). */
  peer: EngineHistory;
  /** Subscribes a broker of the store's kind to `channel`. */
  listen(channel: string): Promise<Inbox>;
  /** Lets time pass by a step: a fake clock moves; a real one needs nothing. */
  tick(): void;
}

interface Backing {
  name: string;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  world(): Promise<World & { close(): Promise<void> }>;
}

let roomSeq = 0;
/** A fresh room per test, so tests sharing one Redis never see each other. */
function freshRoom(name: string): { room: string; channel: string } {
  roomSeq += 1;
  const room = `test:${process.pid}:${roomSeq}:${name}`;
  // The room as hash tag, as crier names channels on Redis Cluster (harmless on one Redis).
  return { room, channel: `crier-test:room:{${room}}` };
}

function message(room: string, data: string): Envelope {
  return { kind: "message", room, node: "node-a", from: "alice", data: JSON.stringify(data) };
}

const KEEP: HistoryOptions = { size: 100, ttlMs: 60_000 };
const READ_TTL = { ttlMs: KEEP.ttlMs };

const offsetsOf = (envelopes: readonly Envelope[]): Array<number | undefined> => envelopes.map((e) => e.offset);
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function publishAll(
  store: EngineHistory,
  room: string,
  channel: string,
  count: number,
  options = KEEP,
): Promise<StreamPosition[]> {
  const positions: StreamPosition[] = [];
  for (let i = 1; i <= count; i++) positions.push(await store.publish(room, channel, message(room, `m${i}`), options));
  return positions;
}

function historyContract(backing: Backing): void {
  describe(`HistoryStore contract: ${backing.name}`, () => {
    let world: World & { close(): Promise<void> };

    before(() => backing.setup());
    after(() => backing.teardown());
    afterEach(() => world.close());
    const open = async (): Promise<World> => {
      world = await backing.world();
      return world;
    };

    test("offsets start at 1 and grow by 1; the channel carries the returned position", async () => {
      const { store, listen } = await open();
      const { room, channel } = freshRoom("numbering");
      const inbox = await listen(channel);
      const sent = [message(room, "a"), message(room, "b"), message(room, "c")];
      const positions: StreamPosition[] = [];
      for (const envelope of sent) positions.push(await store.publish(room, channel, envelope, KEEP));

      assert.deepEqual(
        positions.map((p) => p.offset),
        [1, 2, 3],
      );
      const epoch = positions[0]?.epoch ?? "";
      assert.ok(epoch.length > 0, "an epoch is assigned");
      assert.ok(positions.every((p) => p.epoch === epoch));
      await inbox.waitFor(3);
      assert.deepEqual(
        inbox.envelopes,
        sent.map((e, i) => ({ ...e, offset: i + 1, epoch })),
      );
    });

    test("concurrent publishes from two instances get consecutive offsets, delivered in offset order", async () => {
      const { store, peer, listen } = await open();
      const { room, channel } = freshRoom("concurrent");
      const inbox = await listen(channel);
      const count = 40;
      const positions = await Promise.all(
        range(1, count).map((i) => (i % 2 === 0 ? store : peer).publish(room, channel, message(room, `m${i}`), KEEP)),
      );
      assert.deepEqual(
        positions.map((p) => p.offset).sort((a, b) => a - b),
        range(1, count),
      );
      assert.equal(new Set(positions.map((p) => p.epoch)).size, 1);
      await inbox.waitFor(count);
      assert.deepEqual(offsetsOf(inbox.envelopes), range(1, count));
      // Each delivery is the message whose publish was told that offset.
      for (const [i, position] of positions.entries()) {
        const delivered = inbox.envelopes[position.offset - 1];
        assert.equal(delivered?.data, JSON.stringify(`m${i + 1}`));
        assert.equal(delivered?.epoch, position.epoch);
      }
    });

    test("read since N returns exactly N+1..last, complete", async () => {
      const { store } = await open();
      const { room, channel } = freshRoom("since");
      const positions = await publishAll(store, room, channel, 5);
      const epoch = positions[0]?.epoch ?? "";

      const read = await store.read(room, { since: { offset: 2, epoch }, ...READ_TTL });
      assert.deepEqual(read.position, { offset: 5, epoch });
      assert.equal(read.complete, true);
      assert.deepEqual(offsetsOf(read.messages), [3, 4, 5]);
      assert.deepEqual(
        read.messages.map((m) => [m.data, m.epoch, m.room, m.from]),
        [3, 4, 5].map((i) => [JSON.stringify(`m${i}`), epoch, room, "alice"]),
      );

      const fromStart = await store.read(room, { since: { offset: 0, epoch }, ...READ_TTL });
      assert.deepEqual([fromStart.complete, offsetsOf(fromStart.messages)], [true, range(1, 5)]);
      const atEnd = await store.read(room, { since: { offset: 5, epoch }, ...READ_TTL });
      assert.deepEqual([atEnd.complete, atEnd.messages], [true, []]);
    });

    test("read since another epoch, or an offset never reached, is incomplete with no messages", async () => {
      const { store } = await open();
      const { room, channel } = freshRoom("epoch");
      const [first] = await publishAll(store, room, channel, 3);
      const epoch = first?.epoch ?? "";

      const otherEpoch = await store.read(room, { since: { offset: 1, epoch: "not-this-one" }, ...READ_TTL });
      assert.deepEqual(otherEpoch, { position: { offset: 3, epoch }, messages: [], complete: false });
      const ahead = await store.read(room, { since: { offset: 9, epoch }, ...READ_TTL });
      assert.deepEqual(ahead, { position: { offset: 3, epoch }, messages: [], complete: false });
    });

    test("read since an offset trimmed by size is incomplete; the retained rest still comes", async () => {
      const { store } = await open();
      const { room, channel } = freshRoom("trimmed");
      const positions = await publishAll(store, room, channel, 5, { size: 3, ttlMs: KEEP.ttlMs });
      const epoch = positions[0]?.epoch ?? "";

      const lost = await store.read(room, { since: { offset: 1, epoch }, ...READ_TTL });
      assert.deepEqual([lost.complete, offsetsOf(lost.messages)], [false, [3, 4, 5]]);
      // Offset 3 is the oldest retained: nothing after 2 was lost.
      const kept = await store.read(room, { since: { offset: 2, epoch }, ...READ_TTL });
      assert.deepEqual([kept.complete, offsetsOf(kept.messages)], [true, [3, 4, 5]]);
      const latest = await store.read(room, READ_TTL);
      assert.deepEqual([latest.complete, offsetsOf(latest.messages)], [true, [3, 4, 5]]);
    });

    test("an empty room reads as offset 0 with an epoch that the first publish keeps", async () => {
      const { store, peer } = await open();
      const { room, channel } = freshRoom("empty");
      const empty = await store.read(room, READ_TTL);
      assert.equal(empty.position.offset, 0);
      assert.ok(empty.position.epoch.length > 0);
      assert.deepEqual([empty.messages, empty.complete], [[], true]);
      // Another instance reading the same empty room gets the same epoch.
      assert.deepEqual((await peer.read(room, READ_TTL)).position, empty.position);

      const published = await store.publish(room, channel, message(room, "first"), KEEP);
      assert.deepEqual(published, { offset: 1, epoch: empty.position.epoch });
      // The subscriber that got {0, epoch} recovers the first message completely.
      const recovered = await store.read(room, { since: empty.position, ...READ_TTL });
      assert.deepEqual([recovered.complete, offsetsOf(recovered.messages)], [true, [1]]);
    });

    test("limit takes the first messages after since, or the latest ones without it", async () => {
      const { store } = await open();
      const { room, channel } = freshRoom("limit");
      const [first] = await publishAll(store, room, channel, 6);
      const epoch = first?.epoch ?? "";

      const latest = await store.read(room, { limit: 2, ...READ_TTL });
      assert.deepEqual([latest.position.offset, offsetsOf(latest.messages), latest.complete], [6, [5, 6], true]);
      const page = await store.read(room, { since: { offset: 1, epoch }, limit: 2, ...READ_TTL });
      assert.deepEqual([page.position.offset, offsetsOf(page.messages), page.complete], [6, [2, 3], true]);
      const more = await store.read(room, { limit: 50, ...READ_TTL });
      assert.deepEqual(offsetsOf(more.messages), range(1, 6));
    });

    test("long reads: a page far behind the head, and the latest many", async () => {
      const { store, peer } = await open();
      const { room, channel } = freshRoom("long");
      const [first] = await publishAll(store, room, channel, 60);
      const epoch = first?.epoch ?? "";
      const page = await peer.read(room, { since: { offset: 10, epoch }, limit: 30, ...READ_TTL });
      assert.deepEqual([page.complete, offsetsOf(page.messages)], [true, range(11, 40)]);
      assert.deepEqual(
        page.messages.map((m) => m.data),
        range(11, 40).map((i) => JSON.stringify(`m${i}`)),
      );
      const rest = await peer.read(room, { since: { offset: 40, epoch }, ...READ_TTL });
      assert.deepEqual([rest.complete, offsetsOf(rest.messages)], [true, range(41, 60)]);
      const latest = await peer.read(room, { limit: 25, ...READ_TTL });
      assert.deepEqual(offsetsOf(latest.messages), range(36, 60));
      const trimmed = await publishAll(store, room, channel, 1, { size: 30, ttlMs: KEEP.ttlMs });
      assert.equal(trimmed[0]?.offset, 61);
      const lost = await peer.read(room, { since: { offset: 5, epoch }, ...READ_TTL });
      assert.deepEqual([lost.complete, offsetsOf(lost.messages)], [false, range(32, 61)]);
    });

    test("messages older than ttl are gone; the epoch and offset outlive them", async () => {
      const { store, tick } = await open();
      const { room, channel } = freshRoom("ttl");
      const short: HistoryOptions = { size: 100, ttlMs: 300 };
      const [first] = await publishAll(store, room, channel, 2, short);
      const epoch = first?.epoch ?? "";
      const before = await store.read(room, { ttlMs: short.ttlMs });
      assert.deepEqual(offsetsOf(before.messages), [1, 2]);

      await waitUntil("both messages expire", async () => {
        tick();
        return (await store.read(room, { ttlMs: short.ttlMs })).messages.length === 0;
      });
      const lost = await store.read(room, { since: { offset: 0, epoch }, ttlMs: short.ttlMs });
      assert.deepEqual(lost, { position: { offset: 2, epoch }, messages: [], complete: false });
      // A subscriber that had everything missed nothing.
      const upToDate = await store.read(room, { since: { offset: 2, epoch }, ttlMs: short.ttlMs });
      assert.equal(upToDate.complete, true);
      assert.deepEqual(await store.publish(room, channel, message(room, "later"), short), { offset: 3, epoch });
    });

    test("when only the older messages expired, the fresh ones remain and since before them is incomplete", async () => {
      const { store, tick } = await open();
      const { room, channel } = freshRoom("partly");
      const readTtl = { ttlMs: 300 };
      const [first] = await publishAll(store, room, channel, 20);
      const epoch = first?.epoch ?? "";
      await waitUntil("the first twenty expire", async () => {
        tick();
        return (await store.read(room, readTtl)).messages.length === 0;
      });
      await store.publish(room, channel, message(room, "m21"), KEEP);
      await store.publish(room, channel, message(room, "m22"), KEEP);

      const latest = await store.read(room, readTtl);
      assert.deepEqual(offsetsOf(latest.messages), [21, 22]);
      const lost = await store.read(room, { since: { offset: 3, epoch }, ...readTtl });
      assert.deepEqual([lost.complete, offsetsOf(lost.messages)], [false, [21, 22]]);
      const kept = await store.read(room, { since: { offset: 20, epoch }, ...readTtl });
      assert.deepEqual([kept.complete, offsetsOf(kept.messages)], [true, [21, 22]]);
    });

    test("close is idempotent; afterwards publish and read are unavailable", async () => {
      const { store } = await open();
      const { room, channel } = freshRoom("closed");
      await Promise.all([store.close(), store.close()]);
      await store.close();
      const unavailable = (err: unknown): true => {
        assert.ok(err instanceof ProtocolError);
        assert.equal(err.code, "unavailable");
        return true;
      };
      await assert.rejects(store.publish(room, channel, message(room, "late"), KEEP), unavailable);
      await assert.rejects(store.read(room, READ_TTL), unavailable);
    });
  });
}

/** Delivers each channel's envelopes to its inbox. */
function dispatcher(): { inboxes: Map<string, Inbox>; handler: (channel: string, envelope: Envelope) => void } {
  const inboxes = new Map<string, Inbox>();
  return { inboxes, handler: (channel, envelope) => inboxes.get(channel)?.push(envelope) };
}

async function listenOn(broker: Broker, inboxes: Map<string, Inbox>, channel: string): Promise<Inbox> {
  const inbox = new Inbox();
  inboxes.set(channel, inbox);
  await broker.subscribe(channel);
  return inbox;
}

historyContract({
  name: "memory engine",
  async setup() {},
  async teardown() {},
  async world() {
    let now = 1_700_000_000_000;
    const { inboxes, handler } = dispatcher();
    const broker = new MemoryBroker({ history: { now: () => now } });
    await broker.start(handler);
    const store = engineHistory(broker, broker.history);
    return {
      store,
      peer: store,
      listen: (channel) => listenOn(broker, inboxes, channel),
      tick: () => {
        now += 50;
      },
      close: () => store.close(),
    };
  },
});

/** The Redis engine's world on the server `url()` names: two instances appending, a third listening. */
async function redisWorld(url: string): Promise<World & { close(): Promise<void> }> {
  const prefix = "crier-test:";
  const instance = async (): Promise<EngineHistory> => {
    const appender = new RedisBroker({ url, prefix });
    const reader = new RedisHistory({ url, prefix });
    await Promise.all([appender.start(() => {}), reader.start()]);
    return engineHistory(appender, reader);
  };
  const { inboxes, handler } = dispatcher();
  const broker = new RedisBroker({ url });
  const [store, peer] = await Promise.all([instance(), instance(), broker.start(handler)]);
  return {
    store,
    peer,
    listen: (channel) => listenOn(broker, inboxes, channel),
    tick: () => {},
    async close() {
      await Promise.all([store.close(), peer.close(), broker.close()]);
    },
  };
}

let redis: RedisProcess | undefined;

historyContract({
  name: "Redis engine",
  async setup() {
    redis = await startRedis();
  },
  async teardown() {
    await redis?.stop();
  },
  world: () => redisWorld(redis?.url ?? ""),
});

let cluster: RedisClusterProcess | undefined;

historyContract({
  name: "Redis Cluster engine",
  async setup() {
    cluster = await startRedisCluster();
  },
  async teardown() {
    await cluster?.stop();
  },
  world: () => redisWorld(cluster?.url ?? ""),
});

let nats: NatsProcess | undefined;

historyContract({
  name: "NATS engine (JetStream)",
  async setup() {
    nats = await startNats();
  },
  async teardown() {
    await nats?.stop();
  },
  async world() {
    const url = nats?.url ?? "";
    const prefix = "crier-test:";
    const instance = async (): Promise<EngineHistory> => {
      // The channels freshRoom() names: hash-tagged.
      const channels = new ChannelNames(prefix, true);
      const appender = new NatsBroker({ link: new NatsLink("broker", { url }), prefix, channels });
      const reader = new NatsHistory({ link: new NatsLink("history", { url }), prefix, channels });
      await Promise.all([appender.start(() => {}), reader.start()]);
      return engineHistory(appender, reader);
    };
    const { inboxes, handler } = dispatcher();
    const broker = new NatsBroker({ link: new NatsLink("broker", { url }), prefix });
    const [store, peer] = await Promise.all([instance(), instance(), broker.start(handler)]);
    return {
      store,
      peer,
      listen: (channel) => listenOn(broker, inboxes, channel),
      tick: () => {},
      async close() {
        await Promise.all([store.close(), peer.close(), broker.close()]);
      },
    };
  },
});

// The memory engine beyond the contract: bounded memory over time, and a broker that is gone.
describe("MemoryHistory housekeeping", () => {
  const HOUR = 60 * 60 * 1000;

  test("a room idle for max(ttl, 24h) is dropped by the sweep; before that its epoch and offset stay", async () => {
    let now = 0;
    const broker = new MemoryBroker({ history: { now: () => now, sweepIntervalMs: 0 } });
    const store = broker.history;
    const { room, channel } = freshRoom("sweep");
    const position = await broker.append(channel, message(room, "x"), { room, size: 10, ttlMs: 1000 });
    await store.read(freshRoom("read-only").room, { ttlMs: 1000 });
    assert.equal(store.roomCount(), 2);

    now += 23 * HOUR;
    store.sweep();
    assert.equal(store.roomCount(), 2, "kept: idle for less than 24h");
    now += HOUR;
    store.sweep();
    assert.equal(store.roomCount(), 0, "dropped: idle for 24h, messages long expired");
    // A room that comes back starts a new epoch, so an old position is known to be stale.
    const reborn = await store.read(room, { since: position, ttlMs: 1000 });
    assert.equal(reborn.complete, false);
    assert.equal(reborn.position.offset, 0);
    assert.notEqual(reborn.position.epoch, position.epoch);
    await store.close();
  });

  test("a ttl longer than 24h keeps the room that long", async () => {
    let now = 0;
    const broker = new MemoryBroker({ history: { now: () => now, sweepIntervalMs: 0 } });
    const store = broker.history;
    const { room, channel } = freshRoom("long-ttl");
    await broker.append(channel, message(room, "x"), { room, size: 10, ttlMs: 48 * HOUR });
    now += 47 * HOUR;
    store.sweep();
    assert.equal(store.roomCount(), 1);
    assert.equal((await store.read(room, { ttlMs: 48 * HOUR })).messages.length, 1);
    now += 48 * HOUR;
    store.sweep();
    assert.equal(store.roomCount(), 0);
    await store.close();
  });

  test("with the broker closed, append is unavailable, counted as failed, and nothing is appended", async () => {
    const broker = new MemoryBroker();
    const { room, channel } = freshRoom("broker-gone");
    await broker.append(channel, message(room, "kept"), { room, ...KEEP });
    await broker.close();
    await assert.rejects(broker.append(channel, message(room, "lost"), { room, ...KEEP }), (err: unknown) => {
      assert.ok(err instanceof ProtocolError);
      assert.equal(err.code, "unavailable");
      return true;
    });
    assert.deepEqual([broker.stats().published, broker.stats().publishFailed], [1, 1]);
    assert.throws(() => broker.history.append(room, message(room, "late"), KEEP), ProtocolError);
  });
});
