// The backplane contract (ARCHITECTURE.md "Seams"), run against every Broker implementation:
// the same tests, so the embedded memory broker and Redis behave the same.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { ProtocolError } from "crier-protocol";
import { Redis } from "ioredis";
import { Collector } from "../../../../test/support/collector.js";
import { type NatsProcess, startNats } from "../../../../test/support/nats.js";
import { type RedisProcess, startRedis } from "../../../../test/support/redis.js";
import { type RedisClusterProcess, startRedisCluster } from "../../../../test/support/redis-cluster.js";
import { NatsLink } from "../nats/connection.js";
import type { Broker } from "./broker.js";
import type { Envelope } from "./envelope.js";
import { MemoryBroker } from "./memory.js";
import { NatsBroker } from "./nats.js";
import { RedisBroker } from "./redis.js";

interface Delivery {
  channel: string;
  envelope: Envelope;
}

/** Collects what a broker delivers; waits for deliveries by event, with a deadline. */
class Inbox extends Collector<Delivery> {
  constructor() {
    super((deliveries) => JSON.stringify(deliveries.map((d) => d.envelope.data)));
  }

  get deliveries(): readonly Delivery[] {
    return this.items;
  }

  readonly handler = (channel: string, envelope: Envelope): void => this.push({ channel, envelope });

  channels(): string[] {
    return this.items.map((d) => d.channel);
  }

  data(): string[] {
    return this.items.map((d) => d.envelope.data);
  }
}

/** One backplane under test; instances made by `instance()` share it as separate crier instances would. */
interface Backplane<B extends Broker> {
  name: string;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  instance(inbox: Inbox): Promise<B>;
  /** Why this backplane cannot host two instances, when it cannot. */
  singleInstance?: string;
  /** Messages that reached the instance at all, before filtering (proves it was not even sent them). */
  wireReceived?(broker: B): number;
  /** Subscribers of a channel as the backplane itself counts them. */
  subscribers?(channel: string): Promise<number>;
}

function envelope(data: string, offset?: number): Envelope {
  const e: Envelope = { kind: "message", room: "r", node: "test-node", data };
  if (offset !== undefined) e.offset = offset;
  return e;
}

let channelSeq = 0;
/**
 * A fresh channel per test, so tests sharing one Redis never see each other.
 * One hash tag for all: on Redis Cluster they share a shard, so the tests that
 * rely on one order across two channels (a marker published after) hold there.
 */
function channel(name: string): string {
  channelSeq += 1;
  return `test:{${process.pid}}:${channelSeq}:${name}`;
}

function brokerContract<B extends Broker>(backplane: Backplane<B>): void {
  describe(`Broker contract: ${backplane.name}`, () => {
    const open: B[] = [];
    const instance = async (inbox: Inbox): Promise<B> => {
      const broker = await backplane.instance(inbox);
      open.push(broker);
      return broker;
    };

    before(() => backplane.setup());
    after(() => backplane.teardown());
    afterEach(async () => {
      await Promise.all(open.splice(0).map((b) => b.close()));
    });

    test("delivers a publication to a subscribed channel, envelope intact", async () => {
      const inbox = new Inbox();
      const broker = await instance(inbox);
      const ch = channel("room");
      await broker.subscribe(ch);
      const sent: Envelope = {
        kind: "message",
        room: "chat:1",
        node: "n1",
        from: "alice",
        offset: 7,
        epoch: "e1",
        data: '{"text":"hi\\nthere","n":[1,2]}',
      };
      await broker.publish(ch, sent);
      await inbox.waitFor(1);
      assert.deepEqual(inbox.deliveries, [{ channel: ch, envelope: sent }]);
      assert.equal(broker.channelCount(), 1);
      assert.equal(broker.isReady(), true);
    });

    test("delivers nothing after unsubscribe", async () => {
      const inbox = new Inbox();
      const broker = await instance(inbox);
      const ch = channel("left");
      const marker = channel("marker");
      await broker.subscribe(ch);
      await broker.subscribe(marker);
      await broker.publish(ch, envelope("before"));
      await inbox.waitFor(1);
      await broker.unsubscribe(ch);
      await broker.publish(ch, envelope("after"));
      // Publications are delivered in order, so once the later marker is in,
      // "after" would have been too had it been delivered.
      await broker.publish(marker, envelope("marker"));
      await inbox.waitFor(2);
      assert.deepEqual(inbox.data(), ["before", "marker"]);
      assert.equal(broker.channelCount(), 1);
    });

    test("preserves publish order on a channel", async () => {
      const inbox = new Inbox();
      const broker = await instance(inbox);
      const ch = channel("ordered");
      await broker.subscribe(ch);
      const count = 200;
      // Not awaited one by one: order must hold for concurrent publishes too.
      await Promise.all(Array.from({ length: count }, (_, i) => broker.publish(ch, envelope(`m${i}`, i))));
      await inbox.waitFor(count);
      assert.deepEqual(
        inbox.deliveries.map((d) => d.envelope.offset),
        Array.from({ length: count }, (_, i) => i),
      );
    });

    test("subscribe, unsubscribe, subscribe racing ends subscribed", async () => {
      const inbox = new Inbox();
      const broker = await instance(inbox);
      const ch = channel("race");
      await Promise.all([broker.subscribe(ch), broker.unsubscribe(ch), broker.subscribe(ch)]);
      assert.equal(broker.channelCount(), 1);
      if (backplane.subscribers) assert.equal(await backplane.subscribers(ch), 1);
      await broker.publish(ch, envelope("live"));
      await inbox.waitFor(1);
      assert.deepEqual(inbox.data(), ["live"]);
    });

    test("subscribe, unsubscribe racing ends unsubscribed", async () => {
      const inbox = new Inbox();
      const broker = await instance(inbox);
      const ch = channel("race-off");
      const marker = channel("marker");
      await broker.subscribe(marker);
      await Promise.all([broker.subscribe(ch), broker.unsubscribe(ch)]);
      assert.equal(broker.channelCount(), 1);
      if (backplane.subscribers) assert.equal(await backplane.subscribers(ch), 0);
      await broker.publish(ch, envelope("dropped"));
      await broker.publish(marker, envelope("marker"));
      await inbox.waitFor(1);
      assert.deepEqual(inbox.data(), ["marker"]);
    });

    // A single-process backplane has no second instance to reach: the test does not apply.
    const multiInstance = backplane.singleInstance === undefined ? test : () => undefined;
    multiInstance("two instances on one backplane see each other's publications", async () => {
      const inboxA = new Inbox();
      const inboxB = new Inbox();
      const a = await instance(inboxA);
      const b = await instance(inboxB);
      const ch = channel("shared");
      await a.subscribe(ch);
      await b.subscribe(ch);
      if (backplane.subscribers) assert.equal(await backplane.subscribers(ch), 2);
      await a.publish(ch, envelope("from-a"));
      await inboxA.waitFor(1);
      await inboxB.waitFor(1);
      await b.publish(ch, envelope("from-b"));
      await inboxA.waitFor(2);
      await inboxB.waitFor(2);
      // The origin hears its own publication too, in the same order as everyone.
      assert.deepEqual(inboxA.data(), ["from-a", "from-b"]);
      assert.deepEqual(inboxB.data(), ["from-a", "from-b"]);
    });

    test("an instance receives nothing for a channel it has not subscribed", async () => {
      const inboxA = new Inbox();
      const inboxB = new Inbox();
      const a = await instance(inboxA);
      // With one backplane instance per process, the publisher is the receiver itself.
      const b = backplane.singleInstance === undefined ? await instance(inboxB) : a;
      const wanted = channel("wanted");
      const other = channel("other");
      await a.subscribe(wanted);
      await b.publish(other, envelope("not-for-a"));
      await b.publish(other, envelope("not-for-a-either"));
      await b.publish(wanted, envelope("for-a"));
      await inboxA.waitFor(1);
      assert.deepEqual(inboxA.channels(), [wanted]);
      if (backplane.wireReceived) assert.equal(backplane.wireReceived(a), 1, "a was sent a message it did not want");
      if (backplane.subscribers) {
        assert.equal(await backplane.subscribers(other), 0);
        assert.equal(await backplane.subscribers(wanted), 1);
      }
    });

    test("close is idempotent and leaves the broker unavailable", async () => {
      const inbox = new Inbox();
      const broker = await instance(inbox);
      const ch = channel("closing");
      await broker.subscribe(ch);
      const seen: boolean[] = [];
      broker.onReadyChange((ready) => seen.push(ready));
      await Promise.all([broker.close(), broker.close()]);
      await broker.close();
      assert.equal(broker.isReady(), false);
      assert.equal(broker.channelCount(), 0);
      await assert.rejects(broker.publish(ch, envelope("late")), (err: unknown) => {
        assert.ok(err instanceof ProtocolError);
        assert.equal(err.code, "unavailable");
        return true;
      });
      if (backplane.subscribers) assert.equal(await backplane.subscribers(ch), 0);
      assert.ok(
        seen.every((ready) => !ready),
        "a closed broker never reports ready",
      );
    });
  });
}

brokerContract<MemoryBroker>({
  name: "MemoryBroker",
  singleInstance: "the memory broker is one process: there is no second instance to reach",
  async setup() {},
  async teardown() {},
  async instance(inbox) {
    const broker = new MemoryBroker();
    await broker.start(inbox.handler);
    return broker;
  },
});

let redis: RedisProcess | undefined;
let admin: Redis | undefined;

function redisServer(): RedisProcess {
  if (redis === undefined) throw new Error("redis-server not started");
  return redis;
}

brokerContract<RedisBroker>({
  name: "RedisBroker",
  async setup() {
    redis = await startRedis();
    admin = new Redis(redis.url, { lazyConnect: true });
    await admin.connect();
  },
  async teardown() {
    await admin?.quit();
    await redis?.stop();
  },
  async instance(inbox) {
    const broker = new RedisBroker({ url: redisServer().url, startTimeoutMs: 3000 });
    await broker.start(inbox.handler);
    return broker;
  },
  wireReceived: (broker) => broker.stats().received,
  async subscribers(ch) {
    if (admin === undefined) throw new Error("admin connection not open");
    const reply = await admin.call("PUBSUB", "NUMSUB", ch);
    if (!Array.isArray(reply)) throw new Error(`PUBSUB NUMSUB answered ${String(reply)}`);
    return Number(reply[1]);
  },
});

let cluster: RedisClusterProcess | undefined;

brokerContract<RedisBroker>({
  name: "RedisBroker on Redis Cluster (sharded pub/sub)",
  async setup() {
    cluster = await startRedisCluster();
  },
  async teardown() {
    await cluster?.stop();
  },
  async instance(inbox) {
    if (cluster === undefined) throw new Error("the cluster is not started");
    const broker = new RedisBroker({ url: cluster.url, startTimeoutMs: 5000 });
    await broker.start(inbox.handler);
    return broker;
  },
  wireReceived: (broker) => broker.stats().received,
  async subscribers(ch) {
    if (cluster === undefined) throw new Error("the cluster is not started");
    let total = 0;
    for (const master of await cluster.masters()) {
      const reply = await cluster.command(master, "PUBSUB", "SHARDNUMSUB", ch);
      if (!Array.isArray(reply)) throw new Error(`PUBSUB SHARDNUMSUB answered ${String(reply)}`);
      total += Number(reply[1]);
    }
    return total;
  },
});

let nats: NatsProcess | undefined;

brokerContract<NatsBroker>({
  name: "NatsBroker",
  async setup() {
    nats = await startNats();
  },
  async teardown() {
    await nats?.stop();
  },
  async instance(inbox) {
    const link = new NatsLink("broker", { url: nats?.url ?? "" });
    const broker = new NatsBroker({ link, startTimeoutMs: 3000 });
    await broker.start(inbox.handler);
    return broker;
  },
  wireReceived: (broker) => broker.stats().received,
});
