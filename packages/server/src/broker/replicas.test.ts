// On Redis Cluster a room's appends are published and acknowledged, and its
// history read, only once a replica has them (replicas.ts), against a real
// 3+3 cluster: a master whose replica falls behind refuses (`unavailable`) and
// shows nothing; once the replica catches up the held appends go out first, in
// offset order; a master whose replica the cluster declared failed serves alone.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ProtocolError } from "crier-protocol";
import { type RedisClusterProcess, startRedisCluster } from "../../../../test/support/redis-cluster.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { RedisHistory } from "../history/redis.js";
import { historyKeys } from "../history/redis-scripts.js";
import { ChannelNames } from "./broker.js";
import type { Envelope } from "./envelope.js";
import { RedisBroker } from "./redis.js";

const PREFIX = "crier:";
const KEEP = { size: 100, ttlMs: 60_000 };
const names = new ChannelNames(PREFIX, true);

function isUnavailable(error: unknown): boolean {
  return error instanceof ProtocolError && error.code === "unavailable";
}

describe("appends on Redis Cluster wait for a replica", { timeout: 120_000 }, () => {
  let cluster: RedisClusterProcess;
  let broker: RedisBroker;
  let history: RedisHistory;
  /** The data of every message heard on the room's channel, in order. */
  const heard: string[] = [];
  const room = "replicas:room";
  const channel = names.room(room);
  const publish = (data: string) =>
    broker.append(channel, { kind: "message", room, node: "n1", data: JSON.stringify(data) }, { room, ...KEEP });
  const read = async (): Promise<string[]> => {
    const { messages } = await history.read(room, { since: { offset: 0, epoch: epochOf() }, ttlMs: KEEP.ttlMs });
    return messages.map((message: Envelope) => JSON.parse(message.data) as string);
  };
  let epoch = "";
  const epochOf = (): string => epoch;

  before(async () => {
    cluster = await startRedisCluster();
    broker = new RedisBroker({ url: cluster.url, prefix: PREFIX });
    await broker.start((_channel, envelope) => heard.push(JSON.parse(envelope.data) as string));
    await broker.subscribe(channel);
    history = new RedisHistory({ url: cluster.url, prefix: PREFIX });
    await history.start();
  });
  after(async () => {
    await broker.close();
    await history.close();
    await cluster.stop();
  });

  test("a master whose replica falls behind refuses appends and reads; once it catches up they go out in order", async () => {
    const master = await cluster.masterOf(historyKeys(PREFIX, room)[0]);
    const replica = await cluster.replicaOf(master);
    assert.ok(replica !== undefined, "the room's master has a replica");
    const first = await publish("m1");
    epoch = first.epoch;
    await waitUntil("m1 is heard", () => heard.length === 1);
    assert.deepEqual(await read(), ["m1"]);

    // The replica loses its link and cannot get it back (a wrong masterauth).
    await cluster.command(replica, "CONFIG", "SET", "masterauth", "not-the-password");
    await cluster.command(master, "CLIENT", "KILL", "TYPE", "replica");
    try {
      await assert.rejects(publish("m2"), isUnavailable, "not acknowledged: no replica has it");
      await assert.rejects(read(), isUnavailable, "not read back: it could still be lost with the master");
    } finally {
      await cluster.command(replica, "CONFIG", "SET", "masterauth", "");
    }
    await cluster.waitReplicated();
    const third = await publish("m3");
    assert.equal(third.offset, 3, "m2 kept its offset in history");
    // m2 was never published: it goes out now, before m3, each once.
    await waitUntil("m3 is heard", () => heard.includes("m3"));
    assert.deepEqual(heard, ["m1", "m2", "m3"]);
    assert.deepEqual(await read(), ["m1", "m2", "m3"]);
  });

  test("a master whose replica the cluster declared failed acknowledges alone", async () => {
    const master = await cluster.masterOf(historyKeys(PREFIX, room)[0]);
    const replica = await cluster.replicaOf(master);
    assert.ok(replica !== undefined);
    await replica.kill("SIGKILL");
    try {
      await waitUntil("the cluster marks the replica failed", async () => {
        const nodes = String(await cluster.command(master, "CLUSTER", "NODES"));
        return nodes.split("\n").some((line) => line.includes(`:${replica.port}@`) && / slave,fail /.test(line));
      });
      const position = await publish("m4");
      assert.equal(position.offset, 4);
      await waitUntil("m4 is heard", () => heard.includes("m4"));
      assert.deepEqual(await read(), ["m1", "m2", "m3", "m4"]);
    } finally {
      await replica.restart();
    }
    await cluster.waitReplicated(30_000);
  });
});
