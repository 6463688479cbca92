// Per-user connection counts (limits.maxConnectionsPerUser) in memory, in one
// Redis and in Redis Cluster: the same answers for one instance, and in Redis a
// cluster-wide total that forgets a crashed instance's connections once its
// membership key is gone.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type RedisProcess, startRedis } from "../../../../test/support/redis.js";
import { type RedisClusterProcess, startRedisCluster } from "../../../../test/support/redis-cluster.js";
import { nodeKeyPrefix } from "../cluster/redis.js";
import { createClient, type RedisClient } from "../redis/connection.js";
import { MemoryUserConnections, type UserConnections } from "./user-connections.js";
import { RedisUserConnections } from "./user-connections-redis.js";

const PREFIX = "crier-test:";

let seq = 0;
const freshUser = (): string => `user-${process.pid}-${++seq}`;

function contract(name: string, make: () => UserConnections): void {
  describe(`user connections: ${name}`, () => {
    let store: UserConnections;
    before(async () => {
      store = make();
      await store.start();
    });
    after(() => store.close());

    test("admits up to max, then refuses until one is released", async () => {
      const user = freshUser();
      assert.equal(await store.acquire(user, 2), true);
      assert.equal(await store.acquire(user, 2), true);
      assert.equal(await store.acquire(user, 2), false);
      assert.equal(await store.acquire(freshUser(), 2), true, "other users are counted apart");
      store.release(user);
      assert.equal(await store.acquire(user, 2), true);
      assert.equal(await store.acquire(user, 2), false);
    });

    test("concurrent acquires of one user never pass the limit together", async () => {
      const user = freshUser();
      const results = await Promise.all(Array.from({ length: 10 }, () => store.acquire(user, 3)));
      assert.equal(results.filter(Boolean).length, 3);
    });
  });
}

contract("memory", () => new MemoryUserConnections());

/** How a Redis is started for these tests: one redis-server, or a cluster (whose node keys carry a hash tag). */
type StartRedis = () => Promise<{ url: string; cluster: boolean; stop(): Promise<void> }>;

function redisContract(name: string, start: StartRedis): void {
  let url = "";
  /** Where the membership keeps the instances' keys on this engine (cluster/redis.ts). */
  let nodeKeys = "";
  let admin: RedisClient | undefined;
  let stop = async (): Promise<void> => {};
  const store = (nodeId: string): RedisUserConnections =>
    new RedisUserConnections({ url, prefix: PREFIX, nodeId, nodeKeyPrefix: nodeKeys });
  const hash = (user: string): string => `${PREFIX}userconns:{${user}}`;
  const redis = (): RedisClient => {
    if (admin === undefined) throw new Error("redis is not started");
    return admin;
  };

  describe(`user connections on ${name}`, () => {
    before(async () => {
      const started = await start();
      stop = () => started.stop();
      url = started.url;
      nodeKeys = nodeKeyPrefix(PREFIX, started.cluster);
      admin = createClient(url, { lazyConnect: true });
      await admin.connect();
      await admin.set(`${nodeKeys}n1`, "{}");
      await admin.set(`${nodeKeys}n2`, "{}");
    });
    after(async () => {
      await admin?.quit();
      await stop();
    });

    contract(name, () => store("n1"));

    describe("across instances", () => {
      let one: RedisUserConnections;
      let two: RedisUserConnections;
      before(async () => {
        one = store("n1");
        two = store("n2");
        await Promise.all([one.start(), two.start()]);
      });
      after(async () => {
        await one.close();
        await two.close();
      });

      test("the limit holds over the cluster, and a release on one instance frees a slot for another", async () => {
        const user = freshUser();
        assert.equal(await one.acquire(user, 2), true);
        assert.equal(await two.acquire(user, 2), true);
        assert.equal(await one.acquire(user, 2), false);
        assert.equal(await two.acquire(user, 2), false);
        two.release(user);
        // The release is written in the background; the other instance sees it once it lands.
        for (let tries = 0; !(await one.acquire(user, 2)); tries++) assert.ok(tries < 200, "the release never landed");
      });

      test("connections of an instance whose membership key is gone do not count", async () => {
        const user = freshUser();
        // A crashed instance "ghost" left 5 connections behind and no membership key.
        await redis().hset(hash(user), "ghost", "5");
        assert.equal(await one.acquire(user, 2), true);
        assert.equal(await redis().hexists(hash(user), "ghost"), 0, "its field was pruned");
        // A live instance's connections still count: n2 holds one, so n1's second is refused.
        assert.equal(await two.acquire(user, 2), true);
        assert.equal(await one.acquire(user, 2), false);
        assert.equal(await redis().hget(hash(user), "n2"), "1", "a live instance's count is kept");
      });

      test("rewrite() puts this instance's counts back after others pruned them", async () => {
        const user = freshUser();
        assert.equal(await one.acquire(user, 1), true);
        await redis().hdel(hash(user), "n1");
        await one.rewrite();
        assert.equal(await redis().hget(hash(user), "n1"), "1");
        assert.equal(await two.acquire(user, 1), false);
      });
    });
  });
}

redisContract("one Redis", async () => {
  const redis: RedisProcess = await startRedis();
  return { url: redis.url, cluster: false, stop: () => redis.stop() };
});

redisContract("Redis Cluster", async () => {
  const cluster: RedisClusterProcess = await startRedisCluster();
  return { url: cluster.url, cluster: true, stop: () => cluster.stop() };
});
