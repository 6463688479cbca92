// The presence contract (ARCHITECTURE.md "Seams", docs/protocol.md `presence`), run
// against every PresenceStore: the same tests, so the embedded memory store,
// one Redis, Redis Cluster and NATS (JetStream KV) list, count, sweep and rewrite
// members the same way.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { type Member, ProtocolError } from "crier-protocol";
import { type NatsProcess, startNats } from "../../../../test/support/nats.js";
import { type RedisProcess, startRedis } from "../../../../test/support/redis.js";
import { type RedisClusterProcess, startRedisCluster } from "../../../../test/support/redis-cluster.js";
import { nodesBucket } from "../cluster/nats.js";
import { nodeKeyPrefix } from "../cluster/redis.js";
import { encodeToken, NatsLink } from "../nats/connection.js";
import { createClient } from "../redis/connection.js";
import { MemoryPresence } from "./memory.js";
import { NatsPresence } from "./nats.js";
import type { PresenceEntry, PresenceStore } from "./presence.js";
import { RedisPresence } from "./redis.js";

/** The stores one test uses, on a backing shared the way separate crier instances would share it. */
interface World {
  store: PresenceStore;
  /** Another instance's store on the same backing (for memory, one process: the same store). */
  peer: PresenceStore;
  /** Makes the instance `node` live or not, as its membership would. */
  setLive(node: string, live: boolean): Promise<void>;
  close(): Promise<void>;
}

interface Backing {
  name: string;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  /** A fresh world in which the instances n1 and n2 are live. */
  world(): Promise<World>;
}

let roomSeq = 0;
/** A fresh room per test, so tests sharing one Redis never see each other. */
function freshRoom(name: string): string {
  roomSeq += 1;
  return `test:${process.pid}:${roomSeq}:${name}`;
}

function entry(user: string, client: string, node: string, info?: PresenceEntry["info"]): PresenceEntry {
  return info === undefined ? { user, client, node } : { user, client, node, info };
}

const clientsOf = (members: Member[]): string[] => members.map((m) => m.client);

function isUnavailable(error: unknown): boolean {
  return error instanceof ProtocolError && error.code === "unavailable";
}

function presenceContract(backing: Backing): void {
  describe(`PresenceStore contract: ${backing.name}`, () => {
    let world: World;

    before(() => backing.setup());
    after(() => backing.teardown());
    afterEach(() => world.close());
    const open = async (): Promise<World> => {
      world = await backing.world();
      return world;
    };

    test("an added member is listed with user, client and info, without its instance", async () => {
      const { store } = await open();
      const room = freshRoom("listed");
      assert.deepEqual(await store.list(room), [], "an unknown room has no members");
      await store.add(room, entry("ann", "c1", "n1", { name: "Ann", tags: ["a", 1] }));
      await store.add(room, entry("", "c2", "n1"));
      assert.deepEqual(await store.list(room), [
        { user: "", client: "c2" },
        { user: "ann", client: "c1", info: { name: "Ann", tags: ["a", 1] } },
      ]);
    });

    test("adding the same client again replaces its entry", async () => {
      const { store } = await open();
      const room = freshRoom("replace");
      await store.add(room, entry("ann", "c1", "n1", { v: 1 }));
      await store.add(room, entry("ann", "c1", "n1", { v: 2 }));
      assert.deepEqual(await store.list(room), [{ user: "ann", client: "c1", info: { v: 2 } }]);
    });

    test("remove takes a member out; removing one that is not there is no error", async () => {
      const { store } = await open();
      const room = freshRoom("remove");
      await store.add(room, entry("ann", "c1", "n1"));
      await store.add(room, entry("bob", "c2", "n1"));
      await store.remove(room, "c1");
      await store.remove(room, "c1");
      await store.remove(freshRoom("never"), "c9");
      assert.deepEqual(clientsOf(await store.list(room)), ["c2"]);
      await store.remove(room, "c2");
      assert.deepEqual(await store.list(room), []);
    });

    test("members added by two instances are listed by both, ordered by user then client; rooms are apart", async () => {
      const { store, peer } = await open();
      const room = freshRoom("shared");
      const other = freshRoom("other");
      await store.add(room, entry("bob", "c3", "n1"));
      await peer.add(room, entry("ann", "c2", "n2"));
      await peer.add(room, entry("bob", "c1", "n2"));
      await store.add(other, entry("zed", "c9", "n1"));
      for (const reader of [store, peer]) {
        assert.deepEqual(
          (await reader.list(room)).map((m) => `${m.user}/${m.client}`),
          ["ann/c2", "bob/c1", "bob/c3"],
        );
        assert.deepEqual(clientsOf(await reader.list(other)), ["c9"]);
      }
    });

    test("members of an instance that is no longer live are hidden at once, and gone for good once swept", async () => {
      const { store, peer, setLive } = await open();
      const room = freshRoom("dead-node");
      await store.add(room, entry("ann", "c1", "n1"));
      await peer.add(room, entry("bob", "c2", "n2"));
      await setLive("n2", false);
      assert.deepEqual(clientsOf(await store.list(room)), ["c1"], "n2's member is hidden once n2 is gone");
      assert.deepEqual(await store.stats(room), { clients: 2, users: 2 }, "counted until swept");
      assert.equal(await store.sweep(), 1);
      assert.equal(await store.sweep(), 0, "swept once");
      assert.deepEqual(await store.stats(room), { clients: 1, users: 1 });
      await setLive("n2", true);
      assert.deepEqual(
        clientsOf(await peer.list(room)),
        ["c1"],
        "swept, not hidden: an instance that comes back must write its members again",
      );
    });

    test("stats count entries and distinct users without listing them", async () => {
      const { store, peer } = await open();
      const room = freshRoom("stats");
      assert.deepEqual(await store.stats(room), { clients: 0, users: 0 });
      await store.add(room, entry("ann", "c1", "n1"));
      await store.add(room, entry("ann", "c2", "n1"));
      await peer.add(room, entry("bob", "c3", "n2"));
      await store.add(room, entry("ann", "c1", "n1", { again: true }));
      assert.deepEqual(await peer.stats(room), { clients: 3, users: 2 }, "replacing an entry counts it once");
      await store.remove(room, "c1");
      await store.remove(room, "c1");
      assert.deepEqual(await peer.stats(room), { clients: 2, users: 2 });
      await store.remove(room, "c2");
      assert.deepEqual(await peer.stats(room), { clients: 1, users: 1 }, "ann's last connection took her out");
      assert.deepEqual(await store.stats(freshRoom("other")), { clients: 0, users: 0 });
    });

    test("rewrite() writes again what this store added and did not remove", async () => {
      const { store, peer, setLive } = await open();
      const room = freshRoom("rewrite");
      const other = freshRoom("rewrite-other");
      await store.add(room, entry("ann", "c1", "n1", { k: "v" }));
      await store.add(room, entry("bob", "c2", "n1"));
      await store.add(other, entry("cat", "c3", "n1"));
      await store.remove(room, "c2");
      await setLive("n1", false);
      assert.deepEqual(await peer.list(room), []);
      assert.deepEqual(await peer.list(other), []);
      assert.equal(await peer.sweep(), 2);
      await setLive("n1", true);
      assert.deepEqual(await peer.list(room), [], "swept while n1 was gone");
      await store.rewrite();
      assert.deepEqual(await peer.list(room), [{ user: "ann", client: "c1", info: { k: "v" } }]);
      assert.deepEqual(clientsOf(await peer.list(other)), ["c3"]);
      assert.deepEqual(await peer.stats(room), { clients: 1, users: 1 });
      await store.rewrite();
      assert.deepEqual(await peer.stats(room), { clients: 1, users: 1 }, "a second rewrite changes nothing");
    });

    test("once closed, every operation rejects with unavailable", async () => {
      const { store } = await open();
      const room = freshRoom("closed");
      await store.close();
      await store.close();
      assert.equal(store.isReady(), false);
      await assert.rejects(store.add(room, entry("ann", "c1", "n1")), isUnavailable);
      await assert.rejects(store.remove(room, "c1"), isUnavailable);
      await assert.rejects(store.list(room), isUnavailable);
      await assert.rejects(store.stats(room), isUnavailable);
      await assert.rejects(store.sweep(), isUnavailable);
    });
  });
}

// ---- backings ---------------------------------------------------------------------

presenceContract({
  name: "memory",
  async setup() {},
  async teardown() {},
  async world() {
    const dead = new Set<string>();
    const store = new MemoryPresence({ isLive: (node) => !dead.has(node) });
    await store.start();
    return {
      store,
      peer: store,
      async setLive(node, live) {
        if (live) dead.delete(node);
        else dead.add(node);
      },
      close: () => store.close(),
    };
  },
});

let worldSeq = 0;

/**
 * Two stores on the Redis at `url` (one Redis, or a cluster), as two instances
 * would share it: the instances' membership keys where crier keeps them on
 * that engine, under a prefix of the world's own, as if each test ran its own cluster.
 */
async function redisWorld(url: string, cluster: boolean): Promise<World> {
  worldSeq += 1;
  const prefix = `ptest${worldSeq}:`;
  const nodeKeys = nodeKeyPrefix(prefix, cluster);
  const admin = createClient(url, { lazyConnect: true });
  await admin.connect();
  const setLive = async (node: string, live: boolean): Promise<void> => {
    if (live) await admin.set(nodeKeys + node, "{}");
    else await admin.del(nodeKeys + node);
  };
  await setLive("n1", true);
  await setLive("n2", true);
  // Sweeps only when a test asks, so that what a test sees never depends on a timer.
  const store = new RedisPresence({ url, prefix, nodeKeyPrefix: nodeKeys, sweepMs: 0 });
  const peer = new RedisPresence({ url, prefix, nodeKeyPrefix: nodeKeys, sweepMs: 0 });
  await Promise.all([store.start(), peer.start()]);
  return {
    store,
    peer,
    setLive,
    async close() {
      await Promise.all([store.close(), peer.close()]);
      await admin.quit();
    },
  };
}

let redis: RedisProcess | undefined;

presenceContract({
  name: "redis",
  async setup() {
    redis = await startRedis();
  },
  async teardown() {
    await redis?.stop();
  },
  world: () => redisWorld(redis?.url ?? "", false),
});

let cluster: RedisClusterProcess | undefined;

presenceContract({
  name: "Redis Cluster",
  async setup() {
    cluster = await startRedisCluster();
  },
  async teardown() {
    await cluster?.stop();
  },
  world: () => redisWorld(cluster?.url ?? "", true),
});

let nats: NatsProcess | undefined;

presenceContract({
  name: "nats",
  async setup() {
    nats = await startNats();
  },
  async teardown() {
    await nats?.stop();
  },
  async world() {
    const url = nats?.url;
    if (url === undefined) throw new Error("nats is not started");
    worldSeq += 1;
    // A prefix per world: its own buckets, as if each test ran its own cluster.
    const prefix = `ptest${worldSeq}:`;
    const admin = new NatsLink("admin", { url });
    await admin.start();
    const nodes = await nodesBucket(admin, prefix, 10_000);
    const setLive = async (node: string, live: boolean): Promise<void> => {
      if (live) await nodes.put(encodeToken(node), "{}");
      else await nodes.purge(encodeToken(node));
    };
    await setLive("n1", true);
    await setLive("n2", true);
    // Sweeps only when a test asks, so that what a test sees never depends on a timer.
    const open = (): NatsPresence => new NatsPresence({ link: new NatsLink("presence", { url }), prefix, sweepMs: 0 });
    const store = open();
    const peer = open();
    await Promise.all([store.start(), peer.start()]);
    return {
      store,
      peer,
      setLive,
      async close() {
        await Promise.all([store.close(), peer.close(), admin.close()]);
      },
    };
  },
});
