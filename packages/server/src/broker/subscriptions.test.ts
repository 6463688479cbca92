// The listening side on Redis Cluster (ShardedSubscriptions, through RedisBroker)
// when a channel's slot moves to another master, against a real 3+3 cluster:
// the subscription follows the slot, and the broker reports the channel as
// resubscribed (the hub then reads from history what was published while it moved).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type RedisClusterProcess, startRedisCluster } from "../../../../test/support/redis-cluster.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { keySlot } from "../redis/slot.js";
import { ChannelNames } from "./broker.js";
import { RedisBroker } from "./redis.js";

const names = new ChannelNames("crier:", true);

describe("shard subscriptions when a slot moves", { timeout: 60_000 }, () => {
  let cluster: RedisClusterProcess;
  let broker: RedisBroker;
  const heard: string[] = [];
  const resubscribed: string[][] = [];

  before(async () => {
    cluster = await startRedisCluster();
    broker = new RedisBroker({ url: cluster.url });
    broker.onResubscribed((channels) => resubscribed.push([...channels]));
    await broker.start((channel, envelope) => heard.push(`${channel} ${envelope.data}`));
  });
  after(async () => {
    await broker.close();
    await cluster.stop();
  });

  /** A room whose channel's slot `master` owns (or does not). */
  async function roomOn(wanted: (port: number) => boolean, prefix: string): Promise<string> {
    for (let i = 0; i < 1000; i++) {
      if (wanted((await cluster.masterOf(names.room(`${prefix}-${i}`))).port)) return `${prefix}-${i}`;
    }
    throw new Error(`no room found for ${prefix}`);
  }

  test("the subscription moves to the slot's new master and is reported resubscribed; messages flow there", async () => {
    const room = "moving";
    const channel = names.room(room);
    const source = await cluster.masterOf(channel);
    const [target] = (await cluster.masters()).filter((master) => master !== source);
    assert.ok(target !== undefined);
    // The broker already listens on the target (another room there), as an instance with many rooms does.
    const neighbour = names.room(await roomOn((port) => port === target.port, "neighbour"));
    assert.notEqual(keySlot(neighbour), keySlot(channel));
    await broker.subscribe(neighbour);
    await broker.subscribe(channel);
    await broker.publish(channel, { kind: "message", room, node: "n1", data: '"before"' });
    await waitUntil("the message before the move is heard", () => heard.includes(`${channel} "before"`));

    await cluster.moveSlot(channel, target);
    await waitUntil("the broker reports the channel resubscribed", () => resubscribed.flat().includes(channel));
    assert.deepEqual(resubscribed, [[channel]], "only the channel that moved");
    const count = async (master: typeof source): Promise<number> =>
      Number(((await cluster.command(master, "PUBSUB", "SHARDNUMSUB", channel)) as [string, number])[1]);
    assert.equal(await count(target), 1, "subscribed on the new master");
    assert.equal(await count(source), 0, "and no longer on the old one");
    await broker.publish(channel, { kind: "message", room, node: "n1", data: '"after"' });
    await waitUntil("the message after the move is heard", () => heard.includes(`${channel} "after"`));
    assert.equal(broker.isReady(), true);
  });
});
