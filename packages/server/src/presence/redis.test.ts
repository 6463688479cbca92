// What only the Redis presence store has: its keys and their expiry, and what
// it does when Redis goes away and comes back (the contract suite covers the rest).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ProtocolError } from "crier-protocol";
import { Redis } from "ioredis";
import { freePort, type RedisProcess, startRedis } from "../../../../test/support/redis.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { RedisPresence } from "./redis.js";

function isUnavailable(error: unknown): boolean {
  return error instanceof ProtocolError && error.code === "unavailable";
}

test("the constructor rejects a key prefix with braces, which would break the rooms' hash tags", () => {
  assert.throws(
    () => new RedisPresence({ url: "redis://127.0.0.1:1", prefix: "a{b}:", nodeKeyPrefix: "n:" }),
    /braces/,
  );
});

test("with no Redis there, start rejects naming the URL and calls are unavailable at once", async () => {
  const port = await freePort();
  const store = new RedisPresence({ url: `redis://127.0.0.1:${port}`, nodeKeyPrefix: "n:", timeoutMs: 300 });
  try {
    await assert.rejects(store.start(500), new RegExp(`127\\.0\\.0\\.1:${port}`));
    await assert.rejects(store.add("r", { user: "u", client: "c", node: "n1" }), isUnavailable);
    await assert.rejects(store.list("r"), isUnavailable);
    await assert.rejects(store.remove("r", "c"), isUnavailable);
    assert.equal(store.isReady(), false);
  } finally {
    await store.close();
  }
});

describe("RedisPresence against a real redis-server", () => {
  let redis: RedisProcess;
  let admin: Redis;

  before(async () => {
    redis = await startRedis();
    admin = new Redis(redis.url);
  });
  after(async () => {
    await admin.quit();
    await redis.stop();
  });

  test("an entry is JSON {user, client, info, node, w} in the room's hash, under the room's hash tag, with a TTL", async () => {
    const store = new RedisPresence({ url: redis.url, prefix: "keys:", nodeKeyPrefix: "keys:node:", ttlMs: 60_000 });
    try {
      await store.add("chat:1", { user: "ann", client: "c1", info: { name: "Ann" }, node: "n1" });
      const key = "keys:presence:{chat:1}";
      const stored = await admin.hgetall(key);
      assert.deepEqual(Object.keys(stored), ["c1"]);
      const { w, ...entry } = JSON.parse(stored.c1 ?? "");
      assert.deepEqual(entry, { user: "ann", client: "c1", info: { name: "Ann" }, node: "n1" });
      // A stamp unique to the write, so a rewrite is a different value (see presence/redis.ts).
      assert.equal(typeof w, "number");
      await store.add("chat:1", { user: "ann", client: "c1", info: { name: "Ann" }, node: "n1" });
      assert.notEqual(JSON.parse((await admin.hget(key, "c1")) ?? "").w, w);
      const ttl = await admin.pttl(key);
      assert.ok(ttl > 50_000 && ttl <= 60_000, `TTL ${ttl}`);
      // Removing the last member leaves no key behind.
      await store.remove("chat:1", "c1");
      assert.equal(await admin.exists(key), 0);
    } finally {
      await store.close();
    }
  });

  test("entries that are not entries are dropped from the list and the hash", async () => {
    const store = new RedisPresence({ url: redis.url, prefix: "junk:", nodeKeyPrefix: "junk:node:" });
    try {
      await admin.set("junk:node:n1", "{}");
      await store.add("r", { user: "ann", client: "c1", node: "n1" });
      await admin.hset("junk:presence:{r}", "bad1", "not json", "bad2", '{"user":"x"}', "bad3", '{"node":7}');
      assert.deepEqual(await store.list("r"), [{ user: "ann", client: "c1" }]);
      assert.deepEqual(await admin.hkeys("junk:presence:{r}"), ["c1"]);
    } finally {
      await store.close();
    }
  });

  test("a room with members here keeps its hash past the TTL; an abandoned one expires", async () => {
    const options = { url: redis.url, prefix: "ttl:", nodeKeyPrefix: "ttl:node:", ttlMs: 300, refreshMs: 50 };
    const live = new RedisPresence(options);
    const crashed = new RedisPresence(options);
    try {
      await live.add("kept", { user: "ann", client: "c1", node: "n1" });
      await crashed.add("abandoned", { user: "bob", client: "c2", node: "n2" });
      // Closing without removing is what a crash looks like from Redis.
      await crashed.close();
      await waitUntil(
        "the abandoned room's hash expires",
        async () => (await admin.exists("ttl:presence:{abandoned}")) === 0,
      );
      // It was added after "kept", so "kept" is past its first TTL too: only the refreshes kept it.
      assert.equal(await admin.exists("ttl:presence:{kept}"), 1);
      assert.deepEqual(await admin.hkeys("ttl:presence:{kept}"), ["c1"]);
    } finally {
      await live.close();
      await crashed.close();
    }
  });
});

describe("RedisPresence across a Redis restart", () => {
  test("calls are unavailable while Redis is down; back empty, the entries this store still has are written again", async () => {
    const redis = await startRedis();
    const store = new RedisPresence({ url: redis.url, prefix: "restart:", nodeKeyPrefix: "restart:node:" });
    const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    admin.on("error", () => {});
    try {
      await admin.connect();
      await admin.set("restart:node:n1", "{}");
      await store.add("r", { user: "ann", client: "c1", node: "n1" });
      await store.add("r", { user: "bob", client: "c2", node: "n1" });
      await redis.kill("SIGKILL");
      await assert.rejects(store.add("r", { user: "cat", client: "c3", node: "n1" }), isUnavailable);
      await assert.rejects(store.remove("r", "c2"), isUnavailable);
      await assert.rejects(store.list("r"), isUnavailable);
      assert.equal(store.isReady(), false);

      await redis.restart();
      // The restart lost the node key too; the membership would write it again.
      await waitUntil("the admin connection is back", async () => admin.status === "ready");
      await admin.set("restart:node:n1", "{}");
      await waitUntil("ann is listed again", async () =>
        (await store.list("r").catch(() => [])).some((member) => member.client === "c1"),
      );
      // Neither the member whose add failed nor the one removed during the outage came back.
      assert.deepEqual(await admin.hkeys("restart:presence:{r}"), ["c1"]);
    } finally {
      await store.close();
      admin.disconnect();
      await redis.stop();
    }
  });
});
