// Per-user connection counts (limits.maxConnectionsPerUser), run against every
// UserConnections: memory for one instance, and one Redis, Redis Cluster and
// NATS (JetStream KV) for a cluster, where the total is cluster-wide and
// forgets a crashed instance's connections once its membership entry is gone.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { KV } from "nats";
import { type NatsProcess, startNats } from "../../../../test/support/nats.js";
import { startRedis } from "../../../../test/support/redis.js";
import { startRedisCluster } from "../../../../test/support/redis-cluster.js";
import { nodesBucket } from "../cluster/nats.js";
import { nodeKeyPrefix } from "../cluster/redis.js";
import { boundedToken, encodeToken, NatsLink, natsNames } from "../nats/connection.js";
import { createClient, type RedisClient } from "../redis/connection.js";
import { MemoryUserConnections, type UserConnections } from "./user-connections.js";
import { NatsUserConnections } from "./user-connections-nats.js";
import { RedisUserConnections } from "./user-connections-redis.js";

interface Backing {
  name: string;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  /** The store of instance `node` (started by the test). */
  store(node: string): UserConnections;
  /** What a cluster backing can do to the membership and the stored counts; absent for one instance. */
  cluster?: {
    /** Makes instance `node` live or gone, as its heartbeats (or their end) would. */
    setLive(node: string, live: boolean): Promise<void>;
    /** The count instance `node` has stored for `user`, if any. */
    stored(user: string, node: string): Promise<number | undefined>;
    /** Deletes `node`'s count of `user`, as another instance's pruning would. */
    drop(user: string, node: string): Promise<void>;
  };
}

let seq = 0;
const freshUser = (): string => `user-${process.pid}-${++seq}`;

function userConnectionsContract(backing: Backing): void {
  describe(`user connections: ${backing.name}`, () => {
    const stores: UserConnections[] = [];
    const open = async (node: string): Promise<UserConnections> => {
      const store = backing.store(node);
      stores.push(store);
      await store.start();
      return store;
    };
    before(() => backing.setup());
    after(async () => {
      await Promise.all(stores.map((store) => store.close()));
      await backing.teardown();
    });

    test("admits up to max, then refuses until one is released", async () => {
      const store = await open("n1");
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
      const store = await open("n1");
      const user = freshUser();
      const results = await Promise.all(Array.from({ length: 10 }, () => store.acquire(user, 3)));
      assert.equal(results.filter(Boolean).length, 3);
    });

    test("a user id of any length and characters is counted apart from every other", async () => {
      const store = await open("n1");
      const long = `${freshUser()}:${"é.*>".repeat(100)}`;
      assert.equal(await store.acquire(long, 1), true);
      assert.equal(await store.acquire(long, 1), false);
      assert.equal(await store.acquire(`${long}x`, 1), true);
    });

    const cluster = backing.cluster;
    if (cluster === undefined) return;

    test("the limit holds over the cluster, and a release on one instance frees a slot for another", async () => {
      const [one, two] = await Promise.all([open("n1"), open("n2")]);
      const user = freshUser();
      assert.equal(await one.acquire(user, 2), true);
      assert.equal(await two.acquire(user, 2), true);
      assert.equal(await one.acquire(user, 2), false);
      assert.equal(await two.acquire(user, 2), false);
      two.release(user);
      // The release is written in the background; the other instance sees it once it lands.
      for (let tries = 0; !(await one.acquire(user, 2)); tries++) assert.ok(tries < 200, "the release never landed");
    });

    test("concurrent acquires on two instances never pass the limit together", async () => {
      const [one, two] = await Promise.all([open("n1"), open("n2")]);
      const user = freshUser();
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? one : two).acquire(user, 5)),
      );
      assert.equal(results.filter(Boolean).length, 5);
    });

    test("connections of an instance that dropped out of the membership do not count, and are pruned", async () => {
      await cluster.setLive("n3", true);
      const [one, crashed] = await Promise.all([open("n1"), open("n3")]);
      const user = freshUser();
      assert.equal(await crashed.acquire(user, 2), true);
      assert.equal(await crashed.acquire(user, 2), true);
      assert.equal(await one.acquire(user, 2), false, "n3's connections count while it is live");
      await cluster.setLive("n3", false);
      assert.equal(await one.acquire(user, 2), true, "n3's do not once it is gone");
      assert.equal(await cluster.stored(user, "n3"), undefined, "its count was pruned");
      assert.equal(await cluster.stored(user, "n1"), 1);
    });

    test("a dead instance's count is pruned, a live one's beside it still counts", async () => {
      await cluster.setLive("n4", true);
      const [one, two, crashed] = await Promise.all([open("n1"), open("n2"), open("n4")]);
      const user = freshUser();
      assert.equal(await two.acquire(user, 3), true);
      assert.equal(await crashed.acquire(user, 3), true);
      assert.equal(await crashed.acquire(user, 3), true);
      await cluster.setLive("n4", false);
      assert.equal(await one.acquire(user, 2), true, "n4's two do not count once it is gone");
      assert.equal(await one.acquire(user, 2), false, "n2's one still does");
      assert.equal(await cluster.stored(user, "n2"), 1);
      assert.equal(await cluster.stored(user, "n4"), undefined);
    });

    test("rewrite() puts this instance's counts back after others pruned them", async () => {
      const [one, two] = await Promise.all([open("n1"), open("n2")]);
      const user = freshUser();
      assert.equal(await one.acquire(user, 1), true);
      await cluster.drop(user, "n1");
      await one.rewrite();
      assert.equal(await cluster.stored(user, "n1"), 1);
      assert.equal(await two.acquire(user, 1), false);
    });
  });
}

// ---- backings -----------------------------------------------------------------------

userConnectionsContract({
  name: "memory",
  async setup() {},
  async teardown() {},
  store: () => new MemoryUserConnections(),
});

const PREFIX = "crier-test:";
const userKey = (user: string): string => `${PREFIX}userconns:{${user}}`;

/** A Redis backing: one redis-server, or a Redis Cluster (whose membership keys carry a hash tag). */
function redisBacking(
  name: string,
  start: () => Promise<{ url: string; stop(): Promise<void> }>,
  clustered: boolean,
): Backing {
  const nodeKeys = nodeKeyPrefix(PREFIX, clustered);
  let url = "";
  let stop = async (): Promise<void> => {};
  let admin: RedisClient | undefined;
  const redis = (): RedisClient => {
    if (admin === undefined) throw new Error(`${name} is not started`);
    return admin;
  };
  return {
    name,
    async setup() {
      const started = await start();
      url = started.url;
      stop = () => started.stop();
      admin = createClient(url, { lazyConnect: true });
      await admin.connect();
      for (const node of ["n1", "n2"]) await admin.set(`${nodeKeys}${node}`, "{}");
    },
    async teardown() {
      admin?.disconnect();
      await stop();
    },
    store: (nodeId) => new RedisUserConnections({ url, prefix: PREFIX, nodeId, nodeKeyPrefix: nodeKeys }),
    cluster: {
      async setLive(node, live) {
        if (live) await redis().set(`${nodeKeys}${node}`, "{}");
        else await redis().del(`${nodeKeys}${node}`);
      },
      async stored(user, node) {
        const count = await redis().hget(userKey(user), node);
        return count === null ? undefined : Number(count);
      },
      async drop(user, node) {
        await redis().hdel(userKey(user), node);
      },
    },
  };
}

userConnectionsContract(redisBacking("redis", startRedis, false));
userConnectionsContract(redisBacking("Redis Cluster", startRedisCluster, true));

let nats: NatsProcess | undefined;
let natsAdmin: NatsLink | undefined;
let buckets: { counts: KV; nodes: KV } | undefined;
const natsBuckets = (): { counts: KV; nodes: KV } => {
  if (buckets === undefined) throw new Error("nats is not started");
  return buckets;
};
const storedCounts = async (user: string): Promise<Record<string, number>> => {
  const entry = await natsBuckets().counts.get(boundedToken(user));
  return entry === null || entry.operation !== "PUT" ? {} : (entry.json() as Record<string, number>);
};

userConnectionsContract({
  name: "nats",
  async setup() {
    nats = await startNats();
    natsAdmin = new NatsLink("admin", { url: nats.url });
    await natsAdmin.start();
    const counts = await natsAdmin
      .live()
      .jetstream()
      .views.kv(natsNames(PREFIX).userConnectionsBucket, { ttl: 3_600_000, history: 1 });
    buckets = { counts, nodes: await nodesBucket(natsAdmin, PREFIX, 10_000) };
    for (const node of ["n1", "n2"]) await buckets.nodes.put(encodeToken(node), "{}");
  },
  async teardown() {
    await natsAdmin?.close();
    await nats?.stop();
  },
  store: (nodeId) =>
    new NatsUserConnections({
      link: new NatsLink("user-connections", { url: nats?.url ?? "" }),
      nodeId,
      prefix: PREFIX,
    }),
  cluster: {
    async setLive(node, live) {
      if (live) await natsBuckets().nodes.put(encodeToken(node), "{}");
      else await natsBuckets().nodes.purge(encodeToken(node));
    },
    async stored(user, node) {
      return (await storedCounts(user))[node];
    },
    async drop(user, node) {
      const { [node]: _dropped, ...others } = await storedCounts(user);
      await natsBuckets().counts.put(boundedToken(user), JSON.stringify(others));
    },
  },
});
