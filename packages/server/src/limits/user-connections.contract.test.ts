// Per-user connection counts (limits.maxConnectionsPerUser) in memory and in
// Redis: the same answers for one instance, and in Redis a cluster-wide total
// that forgets a crashed instance's connections once its membership key is gone.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import { type RedisProcess, startRedis } from "../../../../test/support/redis.js";
import { MemoryUserConnections, type UserConnections } from "./user-connections.js";
import { RedisUserConnections } from "./user-connections-redis.js";

const PREFIX = "crier-test:";
const NODE_KEYS = `${PREFIX}node:`;

let redis: RedisProcess;
let admin: Redis;
before(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
  await admin.set(`${NODE_KEYS}n1`, "{}");
  await admin.set(`${NODE_KEYS}n2`, "{}");
});
after(async () => {
  admin.disconnect();
  await redis.stop();
});

const redisStore = (nodeId: string): RedisUserConnections =>
  new RedisUserConnections({ url: redis.url, prefix: PREFIX, nodeId, nodeKeyPrefix: NODE_KEYS });

let seq = 0;
const freshUser = (): string => `user-${process.pid}-${++seq}`;

for (const [name, make] of [
  ["memory", () => new MemoryUserConnections()],
  ["redis", () => redisStore("n1")],
] as const) {
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

describe("user connections in Redis, across instances", () => {
  let one: RedisUserConnections;
  let two: RedisUserConnections;
  before(async () => {
    one = redisStore("n1");
    two = redisStore("n2");
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
    await admin.hset(`${PREFIX}userconns:{${user}}`, "ghost", "5");
    assert.equal(await one.acquire(user, 2), true);
    assert.equal(await admin.hexists(`${PREFIX}userconns:{${user}}`, "ghost"), 0, "its field was pruned");
  });

  test("rewrite() puts this instance's counts back after others pruned them", async () => {
    const user = freshUser();
    assert.equal(await one.acquire(user, 1), true);
    await admin.hdel(`${PREFIX}userconns:{${user}}`, "n1");
    await one.rewrite();
    assert.equal(await admin.hget(`${PREFIX}userconns:{${user}}`, "n1"), "1");
    assert.equal(await two.acquire(user, 1), false);
  });
});
