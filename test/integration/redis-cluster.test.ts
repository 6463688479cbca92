// What only Redis Cluster has: a room's messages travel within the shard that
// owns it (sharded pub/sub); a master SIGKILLed during traffic, its replica
// behind, is replaced by that replica while clients stay connected, and every
// acknowledged message reaches every subscriber exactly once, in order; and a
// bad or unreachable cluster URL stops `crier serve` naming the key. Three real
// `crier serve` processes over a real 3-master, 3-replica cluster, shared by
// every test of this file.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import type { StreamPosition } from "crier-protocol";
import { historyKeys } from "../../packages/server/src/history/redis-scripts.js";
import { api, type CrierInstance, runCli, startCrier, writeConfig } from "../support/crier.js";
import {
  ackIndex,
  allAcks,
  assertNoProblems,
  contiguityProblem,
  Publisher,
  roomPosition,
  sequenceProblem,
} from "../support/delivery.js";
import { REDIS_CLUSTER, type RedisClusterEngine } from "../support/engines.js";
import { freePort } from "../support/redis.js";
import { RecordingSubscriber } from "../support/sdk-subscriber.js";
import { waitUntil } from "../support/wait.js";
import { TestClient } from "../support/ws-client.js";

let engine: RedisClusterEngine;
let removeConfig = async (): Promise<void> => {};
const instances: CrierInstance[] = [];
let subscribers: RecordingSubscriber[] = [];

/** The master that owns `room` (its history stream's slot, which its channel shares). */
function ownerOf(room: string): ReturnType<RedisClusterEngine["cluster"]["masterOf"]> {
  return engine.cluster.masterOf(historyKeys("crier:", room)[0]);
}

/** A room that `owner` does (or does not) own. */
async function roomOn(prefix: string, wanted: (port: number) => boolean): Promise<string> {
  for (let i = 0; i < 1000; i++) {
    const room = `${prefix}-${i}`;
    if (wanted((await ownerOf(room)).port)) return room;
  }
  throw new Error(`no room found for ${prefix}`);
}

async function subscribeMany(room: string, count: number): Promise<RecordingSubscriber[]> {
  const group = Array.from(
    { length: count },
    (_, i) => new RecordingSubscriber((instances[i % instances.length] as CrierInstance).url, room),
  );
  subscribers.push(...group);
  await Promise.all(group.map((subscriber) => subscriber.start()));
  return group;
}

/**
 * What a fault in `room` must leave behind: every publish acknowledged or
 * refused with `unavailable`; the room's history kept (same epoch) with every
 * acknowledged message in it, no offset acknowledged twice; and every
 * subscriber given every message after `start` exactly once, in order, on its
 * first subscription, its connection never closed. Resolves to how many were acknowledged.
 */
async function assertEveryMessageOnce(
  room: string,
  start: StreamPosition,
  group: RecordingSubscriber[],
  publishers: Publisher[],
): Promise<number> {
  for (const publisher of publishers) {
    assert.deepEqual(publisher.unexpected, [], "a publish is acknowledged or refused with `unavailable`");
    assert.deepEqual(publisher.failures, [], "every publish got an answer");
  }
  const end = await roomPosition(instances[1] as CrierInstance, room);
  const acks = allAcks(publishers);
  assert.equal(end.epoch, start.epoch, "the room's history survived");
  assert.deepEqual(
    acks.filter((ack) => ack.epoch !== end.epoch || ack.offset > end.offset),
    [],
    "every acknowledged message is in the room's history",
  );
  const index = ackIndex(acks);
  assert.equal(index.size, acks.length, "no offset was acknowledged twice");
  await waitUntil(
    `every subscriber has offset ${end.offset}`,
    () => group.every((subscriber) => subscriber.lastOffset() === end.offset),
    30_000,
  );
  const problems: string[] = [];
  for (const [i, subscriber] of group.entries()) {
    const problem =
      contiguityProblem(subscriber.received, start.offset, end.offset, end.epoch, index) ??
      sequenceProblem(subscriber.received);
    if (problem !== undefined) problems.push(`subscriber ${i}: ${problem}`);
    if (subscriber.closes.length > 0) problems.push(`subscriber ${i}: closed with ${subscriber.closes.join(", ")}`);
    if (subscriber.subscribed.length !== 1) problems.push(`subscriber ${i}: subscribed again`);
  }
  assertNoProblems(problems, "subscribers did not get every message exactly once in order, on one subscription");
  return acks.length;
}

describe("crier on Redis Cluster", { timeout: 90_000 }, () => {
  // Only these tests need the cluster; the URL tests below start nothing.
  before(async () => {
    engine = (await REDIS_CLUSTER.start()) as RedisClusterEngine;
    const config = await writeConfig({
      namespaces: { chat: { history: { size: 10_000, ttl: "10m" } } },
      limits: { maxConnectionsPerIp: 100_000, commandsPerSecond: 10_000 },
    });
    removeConfig = config.remove;
    instances.push(
      ...(await Promise.all(
        ["a", "b", "c"].map((id) =>
          startCrier({ args: [...engine.args, "--node-id", id, "--config", config.path], readyTimeoutMs: 60_000 }),
        ),
      )),
    );
  });

  afterEach(() => {
    for (const subscriber of subscribers) subscriber.close();
    subscribers = [];
  });

  after(async () => {
    await Promise.all(instances.splice(0).map((instance) => instance.stop()));
    await engine?.stop();
    await removeConfig();
  });

  test("a room's channel is a shard channel on the master that owns the room, and nowhere else", async () => {
    const [a, b] = instances as [CrierInstance, CrierInstance];
    const room = "chat:sharded";
    const channel = engine.names.room(room);
    assert.equal(channel, "crier:room:{chat:sharded}", "the room is the channel's hash tag, as in its history keys");
    const group = await subscribeMany(room, 2);
    const owner = await ownerOf(room);
    const masters = await engine.cluster.masters();
    assert.equal(masters.length, 3);
    for (const master of masters) {
      const shardChannels = (await engine.cluster.command(master, "PUBSUB", "SHARDCHANNELS")) as string[];
      const [, count] = (await engine.cluster.command(master, "PUBSUB", "SHARDNUMSUB", channel)) as [string, number];
      if (master === owner) {
        assert.ok(shardChannels.includes(channel), `${channel} is a shard channel on its owner`);
        assert.equal(count, 2, "the two instances with a member listen to it, one connection each");
      } else {
        assert.ok(!shardChannels.includes(channel), `${channel} is not on master ${master.port}`);
        assert.equal(count, 0);
      }
      // Nothing on classic pub/sub, which Redis Cluster would send to every node.
      assert.deepEqual(await engine.cluster.command(master, "PUBSUB", "CHANNELS"), []);
    }
    // And messages flow through it, from an instance with no member in the room too.
    const reply = await api(instances[2] as CrierInstance, "/api/publish", { room, data: { p: 1, s: 1 } });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    await waitUntil("both members got it", () => group.every((subscriber) => subscriber.received.length === 1));
    assert.ok(a !== b);
  });

  test("a master SIGKILLed during traffic: its replica takes over, clients stay connected, refusals are `unavailable`, every acknowledged message reaches every subscriber once, in order", async (t) => {
    const [a, b, c] = instances as [CrierInstance, CrierInstance, CrierInstance];
    const room = `chat:failover-${Date.now()}`;
    const victim = await ownerOf(room);
    // The promise holds for a master with a replica to take over.
    const replica = await engine.cluster.replicaOf(victim);
    assert.ok(replica !== undefined, "the room's master has a replica online");
    // A room on another shard, which must not notice anything.
    const calm = await roomOn(`chat:calm-${Date.now()}`, (port) => port !== victim.port);
    const group = await subscribeMany(room, 60);
    const bystanders = await subscribeMany(calm, 6);
    const start = group[0]?.subscribed[0];
    assert.ok(start?.epoch !== undefined && start.offset !== undefined);

    const publishers = [a, b, c].map((instance, i) => new Publisher(i + 1, instance, room));
    const calmPublisher = new Publisher(9, a, calm);
    let target = Number.POSITIVE_INFINITY;
    const acked = (): number => allAcks(publishers).length;
    const publishing = Promise.all([
      ...publishers.map((publisher) => publisher.run(() => acked() >= target)),
      calmPublisher.run(() => acked() >= target),
    ]);
    let promoted = "";
    try {
      await waitUntil("200 publications are acknowledged", () => acked() >= 200, 30_000);
      // The replica falls behind first: its replication link is cut, and it cannot reconnect (a
      // wrong masterauth), so the master dies holding writes its replica has not got. None of
      // them may have been delivered or acknowledged.
      const answered = (): number => acked() + publishers.reduce((sum, publisher) => sum + publisher.refused, 0);
      await engine.cluster.command(replica, "CONFIG", "SET", "masterauth", "not-the-password");
      await engine.cluster.command(victim, "CLIENT", "KILL", "TYPE", "replica");
      const answeredAtCut = answered();
      await waitUntil("3 more publications are answered after the cut", () => answered() >= answeredAtCut + 3);
      await victim.kill("SIGKILL");
      await engine.cluster.command(replica, "CONFIG", "SET", "masterauth", "");
      const ackedAtKill = acked();
      await engine.cluster.waitHealthy(30_000);
      promoted = String((await ownerOf(room)).port);
      await waitUntil("200 more are acknowledged after the failover", () => acked() >= ackedAtKill + 200, 30_000);
      target = acked() + 100;
    } finally {
      if (target === Number.POSITIVE_INFINITY) target = 0;
      await publishing;
      // Back as a replica of the promoted master, for any test after this one.
      await victim.restart();
      await engine.cluster.waitReplicated(30_000);
    }
    assert.notEqual(promoted, String(victim.port), "another node owns the room now");

    for (const publisher of [calmPublisher]) {
      assert.deepEqual(publisher.unexpected, [], "a publish is acknowledged or refused with `unavailable`");
      assert.deepEqual(publisher.failures, [], "every publish got an answer");
    }
    const refused = publishers.reduce((sum, publisher) => sum + publisher.refused, 0);

    const acks = await assertEveryMessageOnce(room, { offset: start.offset, epoch: start.epoch }, group, publishers);
    t.diagnostic(`failover: ${acks} acknowledged, ${refused} refused with unavailable`);
    // The room on a live shard: every acknowledged message, in order, nobody dropped.
    const calmEnd = await roomPosition(b, calm);
    await waitUntil("the calm room's subscribers are up to date", () =>
      bystanders.every((subscriber) => subscriber.lastOffset() === calmEnd.offset),
    );
    for (const subscriber of bystanders) {
      assert.deepEqual(subscriber.closes, []);
      assert.equal(sequenceProblem(subscriber.received), undefined);
    }
  });

  test("a room's slot resharded to another master during traffic: subscribers keep receiving, the shard subscription follows it, and history has every message for a `since`", async (t) => {
    const [a, b, c] = instances as [CrierInstance, CrierInstance, CrierInstance];
    const room = `chat:reshard-${Date.now()}`;
    const channel = engine.names.room(room);
    const source = await ownerOf(room);
    const target = (await engine.cluster.masters()).find((master) => master !== source);
    assert.ok(target !== undefined);
    const group = await subscribeMany(room, 30);
    const first = group[0]?.subscribed[0];
    assert.ok(first?.epoch !== undefined && first.offset !== undefined);
    const start = { offset: first.offset, epoch: first.epoch };
    const shardSubscribers = async (master: typeof source): Promise<number> =>
      Number(((await engine.cluster.command(master, "PUBSUB", "SHARDNUMSUB", channel)) as [string, number])[1]);
    assert.equal(await shardSubscribers(source), 3, "every instance listens to the room on its master");

    const publishers = [a, b, c].map((instance, i) => new Publisher(i + 1, instance, room));
    let stopAt = Number.POSITIVE_INFINITY;
    const acked = (): number => allAcks(publishers).length;
    const publishing = Promise.all(publishers.map((publisher) => publisher.run(() => acked() >= stopAt)));
    try {
      await waitUntil("100 publications are acknowledged", () => acked() >= 100, 30_000);
      await engine.cluster.moveSlot(historyKeys("crier:", room)[0], target);
      const ackedAtMove = acked();
      assert.equal((await ownerOf(room)).port, target.port, "the slot is the target's now");
      // Then the traffic stops soon, likely before every instance has noticed the move: what they
      // missed meanwhile must reach their subscribers without a later message to reveal the gap.
      await waitUntil("30 more are acknowledged after the move", () => acked() >= ackedAtMove + 30, 30_000);
      stopAt = 0;
    } finally {
      if (stopAt === Number.POSITIVE_INFINITY) stopAt = 0;
      await publishing;
    }

    const acks = await assertEveryMessageOnce(room, start, group, publishers);
    // The instances followed the slot: their shard subscription is on the new master, none is left on the old.
    assert.equal(await shardSubscribers(target), 3);
    assert.equal(await shardSubscribers(source), 0);

    // A client that resubscribes from where the test began gets every message from history, in order.
    const late = await TestClient.connect(c.url);
    try {
      const reply = await late.call({ op: "subscribe", room, since: start });
      assert.equal(reply.op === "subscribed" ? reply.recovered : JSON.stringify(reply), true);
      const end = await roomPosition(b, room);
      const offsets = (): number[] =>
        late.frames.flatMap((frame) => (frame.op === "message" && frame.room === room ? [frame.offset ?? 0] : []));
      await waitUntil(`the late client has offset ${end.offset}`, () => offsets().at(-1) === end.offset);
      assert.deepEqual(
        offsets(),
        Array.from({ length: end.offset - start.offset }, (_, i) => start.offset + 1 + i),
      );
    } finally {
      late.ws.terminate();
    }
    const refused = publishers.reduce((sum, publisher) => sum + publisher.refused, 0);
    t.diagnostic(`resharding: ${acks} acknowledged, ${refused} refused with unavailable`);
  });
});

describe("crier serve with a bad Redis Cluster URL", () => {
  test("a malformed URL is refused naming the key and the expected form", async () => {
    const result = await runCli(["serve", "--redis", "redis+cluster://127.0.0.1:notaport"]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /config key "redis" from --redis: node '127\.0\.0\.1:notaport' is not HOST:PORT/);
    assert.match(result.stderr, /expected redis\+cluster:\/\/\[USER:PASSWORD@\]HOST:PORT\[,HOST:PORT\.\.\.\]/);
    const withDb = await runCli(["serve"], { env: { CRIER_REDIS_URL: "redis+cluster://127.0.0.1:7000/2" } });
    assert.equal(withDb.code, 2, withDb.stderr);
    assert.match(withDb.stderr, /config key "redis" from CRIER_REDIS_URL: a cluster URL has no database/);
  });

  test("an unreachable cluster stops the start naming the key and the URL, password masked", async () => {
    const port = await freePort();
    const result = await runCli(["serve", "--port", "0", "--redis", `redis+cluster://:s3cret@127.0.0.1:${port}`]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      new RegExp(`config key "redis" \\(redis\\+cluster://:\\*\\*\\*@127\\.0\\.0\\.1:${port}\\): .*cannot reach Redis`),
    );
    assert.doesNotMatch(result.stderr, /s3cret/);
  });
});
