// What only the Redis presence store has: its keys and their expiry, its sweep's
// leaves on the rooms' channels (on one Redis and on Redis Cluster, where they
// are shard channels), and what it does when Redis goes away and comes back
// (the contract suite covers the rest).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ProtocolError } from "crier-protocol";
import { Redis } from "ioredis";
import { freePort, type RedisProcess, startRedis } from "../../../../test/support/redis.js";
import { startRedisCluster } from "../../../../test/support/redis-cluster.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { ChannelNames } from "../broker/broker.js";
import type { Envelope } from "../broker/envelope.js";
import { RedisBroker } from "../broker/redis.js";
import { nodeKeyPrefix } from "../cluster/redis.js";
import { createClient, type RedisClient } from "../redis/connection.js";
import { StoreConnection } from "../redis/store-connection.js";
import { RedisPresence } from "./redis.js";
import { Lives } from "./redis-lives.js";
import { PresenceKeys } from "./redis-scripts.js";
import { RedisSweeper } from "./redis-sweep.js";

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

  test("an entry is JSON {user, client, info, node} in the room's hash, under the room's hash tag, with a TTL", async () => {
    const store = new RedisPresence({ url: redis.url, prefix: "keys:", nodeKeyPrefix: "keys:node:", ttlMs: 60_000 });
    try {
      await store.add("chat:1", { user: "ann", client: "c1", info: { name: "Ann" }, node: "n1" });
      const key = "keys:presence:{chat:1}";
      const stored = await admin.hgetall(key);
      assert.deepEqual(Object.keys(stored), ["c1"]);
      assert.deepEqual(JSON.parse(stored.c1 ?? ""), { user: "ann", client: "c1", info: { name: "Ann" }, node: "n1" });
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

/** A Redis the sweep tests run on: one redis-server, or a Redis Cluster. */
interface Backplane {
  url: string;
  /** Redis Cluster: node keys and channels under crier's hash tags. */
  cluster: boolean;
  stop(): Promise<void>;
}

const ONE_REDIS = async (): Promise<Backplane> => {
  const redis = await startRedis();
  return { url: redis.url, cluster: false, stop: () => redis.stop() };
};

const CLUSTER = async (): Promise<Backplane> => {
  const cluster = await startRedisCluster();
  return { url: cluster.url, cluster: true, stop: () => cluster.stop() };
};

for (const [name, startBackplane] of [
  ["one Redis", ONE_REDIS],
  ["Redis Cluster", CLUSTER],
] as const) {
  describe(`sweeping an instance that is gone, on ${name}`, () => {
    let backplane: Backplane;
    let admin: RedisClient;
    /** Listens to the rooms' channels as an instance would: a RedisBroker, sharded on the cluster. */
    let listener: RedisBroker;
    let names: ChannelNames;
    let nodeKeys = "";
    /** Every envelope published on a room channel, in order. */
    const heard: Envelope[] = [];
    let barriers = 0;
    const stores: RedisPresence[] = [];
    const ROOMS = ["r1", "r2", "quiet", "restarted", "back", "raced"];

    // As every instance shares one configuration: "quiet" is a room without join/leave events.
    const open = async (nodeId?: string): Promise<RedisPresence> => {
      const store = new RedisPresence({
        url: backplane.url,
        prefix: "sw:",
        nodeKeyPrefix: nodeKeys,
        nodeId,
        channel: (room) => names.room(room),
        announces: (room) => room !== "quiet",
        sweepMs: 0,
      });
      stores.push(store);
      await store.start();
      return store;
    };
    const setLive = async (live: boolean, ...nodes: string[]): Promise<void> => {
      for (const node of nodes) {
        if (live) await admin.set(nodeKeys + node, "{}");
        else await admin.del(nodeKeys + node);
      }
    };
    /** Resolves once everything published on the rooms' channels before now has been heard. */
    const settled = async (...rooms: string[]): Promise<void> => {
      const before = barriers;
      for (const room of rooms) {
        await listener.publish(names.room(room), { kind: "message", room, node: "test", data: '"barrier"' });
      }
      await waitUntil("the barriers are heard", () => barriers === before + rooms.length);
    };
    const heardOf = (kind: string, room: string): string[] =>
      heard.filter((e) => e.kind === kind && e.room === room).map((e) => `${e.client}:${e.data}`);

    before(async () => {
      backplane = await startBackplane();
      names = new ChannelNames("sw:", backplane.cluster);
      nodeKeys = nodeKeyPrefix("sw:", backplane.cluster);
      admin = createClient(backplane.url, { lazyConnect: true });
      await admin.connect();
      listener = new RedisBroker({ url: backplane.url, prefix: "sw:" });
      await listener.start((_channel, envelope) => {
        if (envelope.kind === "message") barriers += 1;
        else heard.push(envelope);
      });
      for (const room of ROOMS) await listener.subscribe(names.room(room));
    });
    after(async () => {
      await Promise.all(stores.map((store) => store.close()));
      await listener.close();
      await admin.quit();
      await backplane.stop();
    });

    const ANN = { user: "ann", client: "c1", info: { name: "Ann", tags: ["a/b", 1.5] } };
    const BOB = { user: "bob", client: "c2" };
    const CAT = { user: "cat", client: "c3" };

    test("one sweeper per dead instance removes its entries and publishes each leave once, with its join's member", async () => {
      await setLive(true, "n1", "n2");
      const n1 = await open();
      const n2 = await open();
      const n3 = await open();
      await n1.add("r1", { ...ANN, node: "n1" });
      await n1.add("r1", { ...BOB, node: "n1" });
      await n1.add("r2", { ...ANN, node: "n1" });
      await n1.add("quiet", { ...BOB, node: "n1" });
      await n2.add("r1", { ...CAT, node: "n2" });
      await setLive(false, "n1");

      // Two survivors sweep at once: the claim lets one of them do it.
      const removed = await Promise.all([n2.sweep(), n3.sweep()]);
      assert.equal(
        removed.reduce((a, b) => a + b, 0),
        4,
        `removed ${removed}`,
      );
      await settled("r1", "r2", "quiet");
      // The member exactly as the tracker's join carries it: JSON.stringify(member).
      assert.deepEqual(heardOf("leave", "r1").sort(), [`c1:${JSON.stringify(ANN)}`, `c2:${JSON.stringify(BOB)}`]);
      assert.deepEqual(heardOf("leave", "r2"), [`c1:${JSON.stringify(ANN)}`]);
      assert.deepEqual(heardOf("leave", "quiet"), [], "no leave where the room announces none");
      assert.ok(
        heard.every((e) => e.node === "n1"),
        "sent on the dead instance's behalf",
      );
      assert.deepEqual(await n2.list("r1"), [CAT]);
      assert.deepEqual(await n2.stats("r1"), { clients: 1, users: 1 });
      assert.deepEqual(await n2.stats("r2"), { clients: 0, users: 0 });
      assert.equal(await admin.hexists("sw:presence-instances", "n1"), 0, "no longer indexed");
      assert.equal(await admin.exists("sw:presence-rooms:{n1}"), 0);
      assert.equal(await admin.exists("sw:presence-sweep:{n1}"), 0, "the claim is released");
      assert.equal(await n3.sweep(), 0, "nothing left to sweep");

      // n1 was only stalled: back, it writes its entries again and announces the joins of those swept.
      await setLive(true, "n1");
      await n1.add("r1", { user: "dan", client: "c4", node: "n1" });
      await n1.rewrite();
      await settled("r1", "r2", "quiet");
      assert.deepEqual(heardOf("join", "r1").sort(), [`c1:${JSON.stringify(ANN)}`, `c2:${JSON.stringify(BOB)}`]);
      assert.deepEqual(heardOf("join", "r2"), [`c1:${JSON.stringify(ANN)}`]);
      assert.deepEqual(heardOf("join", "quiet"), []);
      assert.deepEqual(await n2.stats("r1"), { clients: 4, users: 4 });
      assert.deepEqual(await n2.list("quiet"), [BOB]);
      await n1.rewrite();
      await settled("r1", "r2");
      assert.equal(heard.filter((e) => e.kind === "join").length, 3, "a second rewrite announces nothing");
    });

    test("a process restarted under the node id of one that crashed sweeps what that one left, at start", async () => {
      await setLive(true, "n7");
      const crashed = new RedisPresence({ url: backplane.url, prefix: "sw:", nodeKeyPrefix: nodeKeys, nodeId: "n7" });
      await crashed.start();
      await crashed.add("restarted", { ...ANN, node: "n7" });
      await crashed.close();
      // Its node key has not even expired: the new process must not take the old members for its own.
      const restarted = await open("n7");
      assert.deepEqual(await restarted.list("restarted"), []);
      await settled("restarted");
      assert.deepEqual(heardOf("leave", "restarted"), [`c1:${JSON.stringify(ANN)}`]);
    });

    test("an instance back before its sweep keeps its entries and nobody hears a leave", async () => {
      await setLive(true, "n5", "n6");
      const n5 = await open();
      const n6 = await open();
      await n5.add("back", { ...ANN, node: "n5" });
      await setLive(false, "n5");
      assert.deepEqual(await n6.list("back"), [], "hidden while it is gone");
      await setLive(true, "n5");
      assert.equal(await n6.sweep(), 0);
      await settled("back");
      assert.deepEqual(heardOf("leave", "back"), []);
      assert.deepEqual(await n6.list("back"), [ANN]);
      await n5.rewrite();
      await settled("back");
      assert.deepEqual(heardOf("join", "back"), [], "it never left, so it does not join again");
    });

    test("a sweep that found an instance dead leaves alone a room it wrote again since, in a newer life", async () => {
      await setLive(true, "n8");
      const n8 = await open();
      await n8.add("raced", { ...BOB, node: "n8" });
      await setLive(false, "n8");
      // A sweeper reads the life n8 had when found dead...
      const life = Number(await admin.hget("sw:presence-instances", "n8"));
      assert.ok(life > 0, "n8 has a life in the registry");
      // ...n8 comes back and writes its entries again before the sweeper reaches the room.
      await setLive(true, "n8");
      await n8.rewrite();
      const conn = new StoreConnection({ url: backplane.url, component: "test-sweeper" });
      try {
        const keys = new PresenceKeys("sw:");
        const sweeper = new RedisSweeper({
          conn,
          keys,
          lives: new Lives(conn, keys.nodes()),
          nodeKeyPrefix: nodeKeys,
          channel: (room) => names.room(room),
          shard: backplane.cluster,
          tombstoneMs: 60_000,
          lockMs: 5000,
        });
        assert.equal(await sweeper.sweepNode("n8", life), 0, "nothing removed");
      } finally {
        await conn.close();
      }
      await settled("raced");
      assert.deepEqual(heardOf("leave", "raced"), [], "no leave for a member still connected");
      assert.deepEqual(await n8.list("raced"), [BOB]);
      assert.equal(await admin.hexists("sw:presence-rooms:{n8}", "raced"), 1, "still indexed for a later sweep");
      // It crashes for real now: the next sweep, in its newer life, takes the member out.
      await setLive(false, "n8");
      const survivor = await open();
      assert.equal(await survivor.sweep(), 1);
      await settled("raced");
      assert.deepEqual(heardOf("leave", "raced"), [`c2:${JSON.stringify(BOB)}`]);
    });
  });
}

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
