// What only the Redis membership does (the contract suite, membership.contract.test.ts,
// covers the rest): the index of node ids beside their entries, pruned of
// expired ones, on one Redis and on a Redis Cluster (one hash tag for all).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startRedis } from "../../../../test/support/redis.js";
import { startRedisCluster } from "../../../../test/support/redis-cluster.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { createClient } from "../redis/connection.js";
import type { NodeInfo } from "./membership.js";
import { nodeIndexKey, nodeKeyPrefix, RedisMembership } from "./redis.js";

/** A membership whose heartbeat the test can stop, leaving its entry behind as a crashed node would. */
class SilencedMembership extends RedisMembership {
  silence(): void {
    this.stopHeartbeat();
  }
}

function nodeInfo(id: string): () => NodeInfo {
  const startedAt = Date.now();
  return () => ({ id, address: "10.0.0.1:1", connections: 0, rooms: 0, startedAt, updatedAt: 0 });
}

const servers = [
  { name: "a real redis-server", cluster: false, start: startRedis },
  { name: "a real Redis Cluster", cluster: true, start: startRedisCluster },
];

for (const server of servers)
  describe(`RedisMembership against ${server.name}`, () => {
    let redis: { url: string; stop(): Promise<void> };
    before(async () => {
      redis = await server.start();
    });
    after(async () => {
      await redis.stop();
    });

    test("entries live under the node key prefix with the node timeout as TTL; expired ones leave the index", async () => {
      const prefix = "index:";
      const options = { url: redis.url, prefix, heartbeatMs: 50, nodeTimeoutMs: 300 };
      const a = new RedisMembership(options);
      const b = new SilencedMembership(options);
      const conn = createClient(redis.url, { lazyConnect: true });
      try {
        await conn.connect();
        await a.start(nodeInfo("node-a"));
        await b.start(nodeInfo("node-b"));
        const ttl = await conn.pttl(`${nodeKeyPrefix(prefix, server.cluster)}node-b`);
        assert.ok(ttl > 0 && ttl <= 300, `TTL ${ttl}`);
        assert.deepEqual((await conn.smembers(nodeIndexKey(prefix, server.cluster))).sort(), ["node-a", "node-b"]);
        b.silence();
        await waitUntil("node-b expires", async () => (await a.nodes()).every((n) => n.id !== "node-b"), 3000);
        assert.deepEqual(
          await conn.smembers(nodeIndexKey(prefix, server.cluster)),
          ["node-a"],
          "pruned, not only hidden",
        );
      } finally {
        await Promise.all([a.close(), b.close()]);
        await conn.quit();
      }
    });
  });
