// Cluster membership through a real redis-server: nodes see each other, a node
// that closes leaves at once, a node that goes silent expires after the timeout.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { ProtocolError } from "crier-protocol";
import { freePort, startRedis } from "../../../../test/support/redis.js";
import { startRedisCluster } from "../../../../test/support/redis-cluster.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { createClient, type RedisClient } from "../redis/connection.js";
import type { NodeInfo } from "./membership.js";
import { MemoryMembership } from "./memory.js";
import { nodeIndexKey, nodeKeyPrefix, RedisMembership, type RedisMembershipOptions } from "./redis.js";

/** A membership whose heartbeat the test can stop, leaving its entry behind as a crashed node would. */
class SilencedMembership extends RedisMembership {
  silence(): void {
    this.stopHeartbeat();
  }
}

function nodeInfo(id: string, connections = 0): () => NodeInfo {
  const startedAt = Date.now();
  return () => ({ id, address: `10.0.0.1:${id.length}`, connections, rooms: 1, startedAt, updatedAt: 0 });
}

const ids = (nodes: NodeInfo[]): string[] => nodes.map((n) => n.id);

test("MemoryMembership lists only this node, until closed", async () => {
  const membership = new MemoryMembership();
  assert.deepEqual(await membership.nodes(), []);
  await membership.start(nodeInfo("solo", 3));
  const [node] = await membership.nodes();
  assert.equal(node?.id, "solo");
  assert.equal(node?.connections, 3);
  assert.ok((node?.updatedAt ?? 0) > 0);
  await membership.close();
  await membership.close();
  assert.deepEqual(await membership.nodes(), []);
});

test("RedisMembership refuses a timeout that live nodes could not meet", () => {
  assert.throws(
    () => new RedisMembership({ url: "redis://127.0.0.1:1", heartbeatMs: 1000, nodeTimeoutMs: 1000 }),
    /nodeTimeoutMs \(1000\) must exceed heartbeatMs \(1000\)/,
  );
});

test("RedisMembership.start rejects naming the URL when Redis is not there", async () => {
  const port = await freePort();
  const membership = new RedisMembership({ url: `redis://127.0.0.1:${port}`, timeoutMs: 300 });
  await assert.rejects(membership.start(nodeInfo("lonely")), new RegExp(`Redis at redis://127\\.0\\.0\\.1:${port}`));
  await membership.close();
});

/** One Redis, or a Redis Cluster (where every membership key shares one hash tag). */
const servers = [
  { name: "a real redis-server", cluster: false, start: startRedis },
  { name: "a real Redis Cluster", cluster: true, start: startRedisCluster },
];

for (const server of servers)
  describe(`RedisMembership against ${server.name}`, () => {
    let redis: { url: string; stop(): Promise<void> };
    let clusterSeq = 0;
    const open: RedisMembership[] = [];
    const admin = async (): Promise<RedisClient> => {
      const conn = createClient(redis.url, { lazyConnect: true });
      await conn.connect();
      return conn;
    };

    before(async () => {
      redis = await server.start();
    });
    after(async () => {
      await redis.stop();
    });
    afterEach(async () => {
      await Promise.all(open.splice(0).map((m) => m.close()));
    });

    /** A fresh cluster (its own key prefix, so tests never see each other's nodes) and a way to add members. */
    function cluster(): { prefix: string; options: RedisMembershipOptions; member(): RedisMembership } {
      clusterSeq += 1;
      const prefix = `test${clusterSeq}:`;
      const options: RedisMembershipOptions = { url: redis.url, prefix, heartbeatMs: 50, nodeTimeoutMs: 300 };
      return {
        prefix,
        options,
        member() {
          const m = new RedisMembership(options);
          open.push(m);
          return m;
        },
      };
    }

    test("two nodes see each other, with their current counts", async () => {
      const c = cluster();
      const a = c.member();
      const b = c.member();
      let connectionsOfA = 1;
      await a.start(() => ({ ...nodeInfo("node-a")(), connections: connectionsOfA }));
      await b.start(nodeInfo("node-b", 7));
      assert.deepEqual(ids(await a.nodes()), ["node-a", "node-b"]);
      assert.deepEqual(ids(await b.nodes()), ["node-a", "node-b"]);
      const fromA = (await b.nodes()).find((n) => n.id === "node-a");
      assert.equal(fromA?.address, "10.0.0.1:6");
      connectionsOfA = 42;
      await waitUntil("b sees a's new connection count", async () => {
        const seen = (await b.nodes()).find((n) => n.id === "node-a");
        return seen?.connections === 42;
      });
    });

    test("a node that closes disappears at once", async () => {
      const c = cluster();
      const a = c.member();
      const b = c.member();
      await a.start(nodeInfo("node-a"));
      await b.start(nodeInfo("node-b"));
      await b.close();
      await b.close();
      assert.deepEqual(ids(await a.nodes()), ["node-a"]);
    });

    test("a node that stops heartbeating drops out after the node timeout", async () => {
      const c = cluster();
      const a = c.member();
      const b = new SilencedMembership(c.options);
      open.push(b);
      await a.start(nodeInfo("node-a"));
      await b.start(nodeInfo("node-b"));
      b.silence();
      const silencedAt = Date.now();
      // Still listed right after: the entry outlives the last heartbeat by the timeout.
      assert.deepEqual(ids(await a.nodes()), ["node-a", "node-b"]);
      await waitUntil("node-b expires", async () => !ids(await a.nodes()).includes("node-b"), 3000);
      const elapsed = Date.now() - silencedAt;
      // The last heartbeat was at most heartbeatMs (50) before silencing, so expiry cannot come much sooner than 300 - 50.
      assert.ok(elapsed >= 200, `node-b expired after only ${elapsed} ms`);
      assert.deepEqual(ids(await a.nodes()), ["node-a"]);
      // The expired node is pruned from the index too, not only hidden.
      const conn = await admin();
      try {
        assert.deepEqual(await conn.smembers(nodeIndexKey(c.prefix, server.cluster)), ["node-a"]);
      } finally {
        await conn.quit();
      }
    });

    test("a node whose entry vanished announces itself again and tells its rejoin listeners", async () => {
      const c = cluster();
      const a = c.member();
      let rejoins = 0;
      a.onRejoin(() => {
        rejoins += 1;
      });
      await a.start(nodeInfo("node-a"));
      const first = (await a.nodes())[0]?.updatedAt ?? 0;
      await waitUntil("a heartbeat after the first", async () => ((await a.nodes())[0]?.updatedAt ?? 0) > first);
      assert.equal(rejoins, 0, "heartbeats that find the entry in place are not rejoins");
      const conn = await admin();
      try {
        // What a stall past the node timeout, or Redis restarting empty, leaves behind.
        await conn.del(`${nodeKeyPrefix(c.prefix, server.cluster)}node-a`);
        await waitUntil("the rejoin listener is called", () => rejoins > 0);
        assert.equal(rejoins, 1);
        assert.deepEqual(ids(await a.nodes()), ["node-a"]);
      } finally {
        await conn.quit();
      }
    });

    test("a malformed entry is ignored, not fatal", async () => {
      const c = cluster();
      const a = c.member();
      await a.start(nodeInfo("node-a"));
      const conn = await admin();
      try {
        await conn.set(`${nodeKeyPrefix(c.prefix, server.cluster)}junk`, "not json", "PX", 5000);
        await conn.sadd(nodeIndexKey(c.prefix, server.cluster), "junk");
        assert.deepEqual(ids(await a.nodes()), ["node-a"]);
      } finally {
        await conn.quit();
      }
    });
  });

describe("RedisMembership across a Redis restart", () => {
  test("nodes() is unavailable while Redis is down, and lists this node as soon as Redis is back", async () => {
    const redis = await startRedis();
    // A long heartbeat: only the announce-on-reconnect can list the node promptly.
    const membership = new RedisMembership({
      url: redis.url,
      prefix: "restart:",
      heartbeatMs: 60_000,
      nodeTimeoutMs: 120_000,
    });
    try {
      await membership.start(nodeInfo("phoenix"));
      assert.deepEqual(ids(await membership.nodes()), ["phoenix"]);
      await redis.kill("SIGKILL");
      await assert.rejects(
        membership.nodes(),
        (error: unknown) => error instanceof ProtocolError && error.code === "unavailable",
      );
      await redis.restart();
      await waitUntil(
        "the node is listed again after the restart",
        async () => ids(await membership.nodes().catch(() => [])).includes("phoenix"),
        5000,
      );
    } finally {
      await membership.close();
      await redis.stop();
    }
  });
});
