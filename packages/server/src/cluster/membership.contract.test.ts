// The membership contract (ARCHITECTURE.md "Seams", "Cluster membership"), run
// against every Membership: the embedded cluster of one, one real redis-server,
// a real Redis Cluster and a real nats-server. Nodes see each other with their
// current counts, a node that closes leaves at once, a silent one expires after
// the node timeout, a node whose entry vanished announces itself again, and a
// restart of the backplane loses the node only while it is down.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { ProtocolError } from "crier-protocol";
import type { KV } from "nats";
import { type NatsProcess, startNats } from "../../../../test/support/nats.js";
import { freePort, type RedisProcess, startRedis } from "../../../../test/support/redis.js";
import { type RedisClusterProcess, startRedisCluster } from "../../../../test/support/redis-cluster.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { encodeToken, NatsLink, natsNames } from "../nats/connection.js";
import { createClient, type RedisClient } from "../redis/connection.js";
import type { Membership, NodeInfo } from "./membership.js";
import { MemoryMembership } from "./memory.js";
import { NatsMembership } from "./nats.js";
import { nodeIndexKey, nodeKeyPrefix, RedisMembership } from "./redis.js";

/** A membership whose heartbeat a test can stop, leaving its entry behind as a crashed node would. */
interface Member extends Membership {
  silence(): void;
}

interface Timing {
  heartbeatMs: number;
  nodeTimeoutMs: number;
}

/** One cluster: its own prefix on the shared backing, so tests never see each other's nodes. */
interface Cluster {
  member(timing?: Timing): Member;
  /** Deletes `id`'s entry, as a stall past the timeout, or the backplane restarting empty, leaves it. */
  dropEntry(id: string): Promise<void>;
  /** Stores an entry that is not a NodeInfo under the id "junk". */
  writeJunk(): Promise<void>;
}

/** A backplane server of a test's own, which it may kill and restart. */
interface OwnServer {
  url: string;
  kill(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

interface Backing {
  name: string;
  /** Whether separate memberships share the cluster (false: a cluster of one, memory). */
  shared: boolean;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  cluster(): Cluster;
  /** A member on a port nobody listens on, and what start() must name in its rejection. */
  unreachable?(): Promise<{ member: Membership; names: RegExp }>;
  /** Ways the backplane restarts under a member: each must find the member listed again. */
  restarts?: Array<{ name: string; server(): Promise<OwnServer>; member(url: string, timing: Timing): Membership }>;
}

/** The defaults: what the cluster-wide tests use when expiry does not matter. */
const DEFAULT: Timing = { heartbeatMs: 3000, nodeTimeoutMs: 10_000 };
/** Short enough for expiry to be quick, long enough that live nodes never expire between heartbeats. */
const FAST: Timing = { heartbeatMs: 50, nodeTimeoutMs: 400 };

function nodeInfo(id: string, connections = 0): () => NodeInfo {
  const startedAt = Date.now();
  return () => ({ id, address: `10.0.0.1:${id.length}`, connections, rooms: 1, startedAt, updatedAt: 0 });
}

const ids = (nodes: NodeInfo[]): string[] => nodes.map((n) => n.id);

function isUnavailable(error: unknown): boolean {
  return error instanceof ProtocolError && error.code === "unavailable";
}

function membershipContract(backing: Backing): void {
  describe(`Membership contract: ${backing.name}`, () => {
    const open: Membership[] = [];
    before(() => backing.setup());
    after(() => backing.teardown());
    afterEach(async () => {
      await Promise.all(open.splice(0).map((m) => m.close()));
    });
    /** A fresh cluster whose members are closed after the test. */
    const cluster = (): Cluster => {
      const c = backing.cluster();
      return {
        ...c,
        member(timing) {
          const m = c.member(timing);
          open.push(m);
          return m;
        },
      };
    };

    test("a started node lists itself with its current counts", async () => {
      const c = cluster();
      const a = c.member(FAST);
      let connections = 3;
      await a.start(() => ({ ...nodeInfo("node:a@x")(), connections }));
      const [node] = await a.nodes();
      assert.equal(node?.id, "node:a@x", "any id, whatever the backplane allows in its keys");
      assert.equal(node?.connections, 3);
      assert.equal(node?.address, "10.0.0.1:8");
      assert.ok((node?.updatedAt ?? 0) > 0, "updatedAt is the heartbeat's time");
      connections = 42;
      await waitUntil("the count is current", async () => (await a.nodes())[0]?.connections === 42);
    });

    if (!backing.shared) {
      test("a cluster of one lists nothing before start and once closed", async () => {
        const a = cluster().member();
        assert.deepEqual(await a.nodes(), []);
        await a.start(nodeInfo("solo"));
        await a.close();
        await a.close();
        assert.deepEqual(await a.nodes(), []);
      });
    }

    const unreachable = backing.unreachable;
    if (unreachable !== undefined) {
      test("start rejects naming the backplane's URL when it is not there", async () => {
        const { member, names } = await unreachable();
        open.push(member);
        await assert.rejects(member.start(nodeInfo("lonely")), names);
      });
    }

    if (!backing.shared) return;

    test("refuses a node timeout that live nodes could not meet", () => {
      assert.throws(
        () => backing.cluster().member({ heartbeatMs: 1000, nodeTimeoutMs: 1000 }),
        /nodeTimeoutMs \(1000\) must exceed heartbeatMs \(1000\)/,
      );
    });

    test("two nodes see each other, with their current counts", async () => {
      const c = cluster();
      const a = c.member(FAST);
      const b = c.member(FAST);
      let connectionsOfA = 1;
      await a.start(() => ({ ...nodeInfo("node-a")(), connections: connectionsOfA }));
      await b.start(nodeInfo("node-b", 7));
      assert.deepEqual(ids(await a.nodes()), ["node-a", "node-b"]);
      assert.deepEqual(ids(await b.nodes()), ["node-a", "node-b"]);
      assert.equal((await b.nodes()).find((n) => n.id === "node-a")?.address, "10.0.0.1:6");
      assert.equal((await a.nodes()).find((n) => n.id === "node-b")?.connections, 7);
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
      await b.start(nodeInfo("node:b@x"));
      assert.deepEqual(ids(await a.nodes()), ["node-a", "node:b@x"]);
      await b.close();
      await b.close();
      assert.deepEqual(ids(await a.nodes()), ["node-a"]);
    });

    test("a node that stops heartbeating drops out after the node timeout", async () => {
      const c = cluster();
      const a = c.member(FAST);
      const b = c.member(FAST);
      await a.start(nodeInfo("node-a"));
      await b.start(nodeInfo("node-b"));
      b.silence();
      const silencedAt = Date.now();
      // Still listed right after: the entry outlives the last heartbeat by the timeout.
      assert.deepEqual(ids(await a.nodes()), ["node-a", "node-b"]);
      await waitUntil("node-b expires", async () => !ids(await a.nodes()).includes("node-b"), 5000);
      const elapsed = Date.now() - silencedAt;
      // The last heartbeat was at most heartbeatMs before silencing, so expiry cannot come much sooner.
      const earliest = FAST.nodeTimeoutMs - FAST.heartbeatMs;
      assert.ok(elapsed >= earliest, `node-b expired after only ${elapsed} ms`);
      assert.deepEqual(ids(await a.nodes()), ["node-a"]);
    });

    test("a node whose entry vanished announces itself again and tells its rejoin listeners", async () => {
      const c = cluster();
      const a = c.member(FAST);
      let rejoins = 0;
      a.onRejoin(() => {
        rejoins += 1;
      });
      await a.start(nodeInfo("node-a"));
      const first = (await a.nodes())[0]?.updatedAt ?? 0;
      await waitUntil("a heartbeat after the first", async () => ((await a.nodes())[0]?.updatedAt ?? 0) > first);
      assert.equal(rejoins, 0, "heartbeats that find the entry in place are not rejoins");
      await c.dropEntry("node-a");
      await waitUntil("the rejoin listener is called", () => rejoins > 0);
      assert.equal(rejoins, 1);
      assert.deepEqual(ids(await a.nodes()), ["node-a"]);
    });

    test("a malformed entry is ignored, not fatal", async () => {
      const c = cluster();
      const a = c.member();
      await a.start(nodeInfo("node-a"));
      await c.writeJunk();
      assert.deepEqual(ids(await a.nodes()), ["node-a"]);
    });

    for (const restart of backing.restarts ?? []) {
      test(`nodes() is unavailable while the backplane is down, and lists this node as soon as it is back (${restart.name})`, async () => {
        const server = await restart.server();
        // A long heartbeat: only the announce-on-reconnect can list the node promptly.
        const membership = restart.member(server.url, { heartbeatMs: 60_000, nodeTimeoutMs: 120_000 });
        try {
          await membership.start(nodeInfo("phoenix"));
          assert.deepEqual(ids(await membership.nodes()), ["phoenix"]);
          await server.kill();
          await waitUntil("the backplane is seen lost", () => membership.nodes().then(() => false, isUnavailable));
          await server.restart();
          await waitUntil(
            "the node is listed again after the restart",
            async () => ids(await membership.nodes().catch(() => [])).includes("phoenix"),
            10_000,
          );
        } finally {
          await membership.close();
          await server.stop();
        }
      });
    }
  });
}

// ---- backings -----------------------------------------------------------------------

membershipContract({
  name: "memory",
  shared: false,
  async setup() {},
  async teardown() {},
  cluster() {
    return {
      member: () => Object.assign(new MemoryMembership(), { silence() {} }),
      async dropEntry() {},
      async writeJunk() {},
    };
  },
});

class SilencedRedis extends RedisMembership {
  silence(): void {
    this.stopHeartbeat();
  }
}

class SilencedNats extends NatsMembership {
  silence(): void {
    this.stopHeartbeat();
  }
}

let clusterSeq = 0;
const freshPrefix = (): string => `mtest${++clusterSeq}:`;

function redisBacking(
  name: string,
  clustered: boolean,
  start: () => Promise<RedisProcess | RedisClusterProcess>,
): Backing {
  let server: RedisProcess | RedisClusterProcess | undefined;
  const url = (): string => {
    if (server === undefined) throw new Error(`${name} is not started`);
    return server.url;
  };
  const command = async (run: (conn: RedisClient) => Promise<unknown>): Promise<void> => {
    const conn = createClient(url(), { lazyConnect: true });
    await conn.connect();
    try {
      await run(conn);
    } finally {
      await conn.quit();
    }
  };
  return {
    name,
    shared: true,
    async setup() {
      server = await start();
    },
    async teardown() {
      await server?.stop();
    },
    cluster() {
      const prefix = freshPrefix();
      const entries = nodeKeyPrefix(prefix, clustered);
      return {
        member: (timing = DEFAULT) => new SilencedRedis({ url: url(), prefix, ...timing }),
        dropEntry: (id) => command((conn) => conn.del(`${entries}${id}`)),
        writeJunk: () =>
          command(async (conn) => {
            await conn.set(`${entries}junk`, "not json", "PX", 5000);
            await conn.sadd(nodeIndexKey(prefix, clustered), "junk");
          }),
      };
    },
  };
}

membershipContract({
  ...redisBacking("one redis-server", false, startRedis),
  async unreachable() {
    const port = await freePort();
    return {
      member: new RedisMembership({ url: `redis://127.0.0.1:${port}`, timeoutMs: 300 }),
      names: new RegExp(`Redis at redis://127\\.0\\.0\\.1:${port}`),
    };
  },
  restarts: [
    {
      name: "back empty",
      server: startRedis,
      member: (url, timing) => new RedisMembership({ url, prefix: "restart:", ...timing }),
    },
  ],
});

membershipContract(redisBacking("a Redis Cluster", true, startRedisCluster));

let nats: NatsProcess | undefined;
const natsLink = (component: string, url = nats?.url ?? ""): NatsLink => new NatsLink(component, { url });

/** One of a test's own nats-server, restarted with its JetStream store kept or lost. */
async function ownNats(wipe: boolean): Promise<OwnServer> {
  const server = await startNats();
  return {
    url: server.url,
    kill: () => server.kill("SIGKILL"),
    restart: () => server.restart({ wipe }),
    stop: () => server.stop(),
  };
}

membershipContract({
  name: "nats-server",
  shared: true,
  async setup() {
    nats = await startNats();
  },
  async teardown() {
    await nats?.stop();
  },
  cluster() {
    const prefix = freshPrefix();
    /** The cluster's nodes bucket as its members made it, on a connection of its own, closed once used. */
    const bucket = async (use: (kv: KV) => Promise<unknown>): Promise<void> => {
      const link = natsLink("admin");
      try {
        await link.start();
        await use(await link.live().jetstream().views.kv(natsNames(prefix).nodesBucket, { bindOnly: true }));
      } finally {
        await link.close();
      }
    };
    return {
      member: (timing = DEFAULT) => new SilencedNats({ link: natsLink("membership"), prefix, ...timing }),
      dropEntry: (id) => bucket((kv) => kv.purge(encodeToken(id))),
      writeJunk: () => bucket((kv) => kv.put("junk", "not json")),
    };
  },
  async unreachable() {
    const port = await freePort();
    return {
      member: new NatsMembership({ link: natsLink("membership", `nats://127.0.0.1:${port}`) }),
      names: new RegExp(`NATS at nats://127\\.0\\.0\\.1:${port}`),
    };
  },
  restarts: [false, true].map((wipe) => ({
    name: wipe ? "its store lost" : "its store kept",
    server: () => ownNats(wipe),
    member: (url: string, timing: Timing) =>
      new NatsMembership({ link: natsLink("membership", url), prefix: "restart:", ...timing }),
  })),
});
