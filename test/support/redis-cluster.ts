// Starts a real Redis Cluster for tests: three masters with one replica each
// (six `redis-server --cluster-enabled yes` children on free ports, joined by
// `redis-cli --cluster create`), and waits until every node reports
// cluster_state:ok and every master's replica is in sync. A short
// cluster-node-timeout makes a killed master's replica take over within a
// couple of seconds, for fault tests.

import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { freePort, type RedisProcess, startRedis } from "./redis.js";
import { waitUntil } from "./wait.js";

const run = promisify(execFile);
const REDIS_CLI = process.env.REDIS_CLI ?? "redis-cli";

/** How long a master may be unreachable before its replica is promoted. */
export const CLUSTER_NODE_TIMEOUT_MS = 1000;

export interface RedisClusterProcess {
  /** redis+cluster://127.0.0.1:P1,...: every node, as a crier user would list them. */
  readonly url: string;
  readonly nodes: readonly RedisProcess[];
  /** The nodes that are masters now (after a failover, a promoted replica is one). */
  masters(): Promise<RedisProcess[]>;
  /** The master that owns `key`'s slot now. */
  masterOf(key: string): Promise<RedisProcess>;
  /** Resolves once every running node reports cluster_state:ok and sees three running masters serving the slots. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Resolves once every master has a replica online (in sync: a replica that rejoins copies the dataset first). */
  waitReplicated(timeoutMs?: number): Promise<void>;
  /** The replica `master` replicates to now (ROLE), or undefined when it has none online. */
  replicaOf(master: RedisProcess): Promise<RedisProcess | undefined>;
  /**
   * Moves the hash slot of `key` to the master `to`, keys and all, as
   * `redis-cli --cluster reshard` does: IMPORTING and MIGRATING, MIGRATE of
   * every key in it, then the slot's new owner announced to every master.
   */
  moveSlot(key: string, to: RedisProcess): Promise<void>;
  /** A command on one node (for PUBSUB SHARDCHANNELS and the like). */
  command(node: RedisProcess, ...args: string[]): Promise<unknown>;
  stop(): Promise<void>;
}

/** A port whose cluster bus port (port + 10000) is free too. */
async function clusterPort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port + 10000 > 65535 || taken.has(port) || taken.has(port + 10000)) continue;
    const bus = await freePort();
    // Not a proof the bus port is free, but a port the OS just handed out is
    // unlikely to be port + 10000; redis-server fails loudly if it is taken.
    if (bus === port + 10000) continue;
    taken.add(port);
    taken.add(port + 10000);
    return port;
  }
}

export async function startRedisCluster(): Promise<RedisClusterProcess> {
  const taken = new Set<number>();
  const ports: number[] = [];
  for (let i = 0; i < 6; i++) ports.push(await clusterPort(taken));
  const nodes = await Promise.all(
    ports.map((port) =>
      startRedis({
        port,
        args: [
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          "nodes.conf",
          "--cluster-node-timeout",
          String(CLUSTER_NODE_TIMEOUT_MS),
          // A replica promotes itself however long it lost touch with its master.
          "--cluster-replica-validity-factor",
          "0",
        ],
      }),
    ),
  );
  const admins = new Map<RedisProcess, Redis>();
  const admin = (node: RedisProcess): Redis => {
    let conn = admins.get(node);
    if (conn === undefined) {
      conn = new Redis(node.port, "127.0.0.1", {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => 100,
      });
      conn.on("error", () => {});
      admins.set(node, conn);
    }
    return conn;
  };
  const command = async (node: RedisProcess, ...args: string[]): Promise<unknown> => {
    const conn = admin(node);
    if (conn.status === "wait") await conn.connect();
    const [name = "", ...rest] = args;
    return conn.call(name, ...rest);
  };
  await run(REDIS_CLI, [
    "--cluster",
    "create",
    ...ports.map((port) => `127.0.0.1:${port}`),
    "--cluster-replicas",
    "1",
    "--cluster-yes",
  ]);

  const alive = new Set(nodes);
  for (const node of nodes) {
    const kill = node.kill.bind(node);
    const restart = node.restart.bind(node);
    Object.assign(node, {
      kill: async (signal?: NodeJS.Signals) => {
        alive.delete(node);
        admins.get(node)?.disconnect();
        admins.delete(node);
        await kill(signal);
      },
      restart: async () => {
        await restart();
        alive.add(node);
      },
    });
  }

  /** "host:port" → role, from CLUSTER NODES as `from` sees it. */
  const view = async (
    from: RedisProcess,
  ): Promise<Array<{ port: number; master: boolean; failed: boolean; slots: boolean }>> => {
    const text = String(await command(from, "CLUSTER", "NODES"));
    return text
      .trim()
      .split("\n")
      .map((line) => {
        const [, address = "", flags = "", , , , , , ...slots] = line.split(" ");
        return {
          port: Number(address.split("@")[0]?.split(":")[1]),
          master: flags.split(",").includes("master"),
          failed: /fail/.test(flags),
          slots: slots.length > 0,
        };
      });
  };

  const masters = async (): Promise<RedisProcess[]> => {
    const [first] = [...alive];
    if (first === undefined) return [];
    const entries = await view(first);
    return nodes.filter((node) =>
      entries.some((entry) => entry.port === node.port && entry.master && !entry.failed && entry.slots),
    );
  };

  const cluster: RedisClusterProcess = {
    url: `redis+cluster://${ports.map((port) => `127.0.0.1:${port}`).join(",")}`,
    nodes,
    masters,
    async masterOf(key) {
      const [first] = [...alive];
      if (first === undefined) throw new Error("no Redis Cluster node is running");
      const slot = Number(await command(first, "CLUSTER", "KEYSLOT", key));
      const ranges = (await command(first, "CLUSTER", "SLOTS")) as Array<[number, number, [string, number]]>;
      const range = ranges.find(([start, end]) => slot >= start && slot <= end);
      const owner = nodes.find((node) => node.port === range?.[2][1]);
      if (owner === undefined) throw new Error(`no master owns slot ${slot} of ${key}`);
      return owner;
    },
    async waitHealthy(timeoutMs = 20_000) {
      await waitUntil(
        "every Redis Cluster node reports cluster_state:ok with three live masters",
        async () => {
          try {
            for (const node of alive) {
              const info = String(await command(node, "CLUSTER", "INFO"));
              if (!info.includes("cluster_state:ok")) return false;
              const entries = await view(node);
              const masters = entries.filter((entry) => entry.master && !entry.failed && entry.slots);
              if (masters.length !== 3) return false;
              // A killed master counts as gone only once a running node has taken its slots.
              if (!masters.every((entry) => [...alive].some((live) => live.port === entry.port))) return false;
            }
            return true;
          } catch {
            return false;
          }
        },
        timeoutMs,
      );
    },
    async waitReplicated(timeoutMs = 20_000) {
      await waitUntil(
        "every master has a replica online",
        async () => {
          for (const master of await masters()) if ((await cluster.replicaOf(master)) === undefined) return false;
          return true;
        },
        timeoutMs,
      );
    },
    async replicaOf(master) {
      const role = (await command(master, "ROLE")) as [string, number, Array<[string, string, string]>];
      const port = Number(role[2]?.[0]?.[1]);
      return nodes.find((node) => node.port === port);
    },
    async moveSlot(key, to) {
      const from = await cluster.masterOf(key);
      if (from === to) throw new Error(`master ${to.port} already owns ${key}`);
      const slot = String(await command(from, "CLUSTER", "KEYSLOT", key));
      const [fromId, toId] = [
        String(await command(from, "CLUSTER", "MYID")),
        String(await command(to, "CLUSTER", "MYID")),
      ];
      await command(to, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromId);
      await command(from, "CLUSTER", "SETSLOT", slot, "MIGRATING", toId);
      for (;;) {
        const keys = (await command(from, "CLUSTER", "GETKEYSINSLOT", slot, "100")) as string[];
        if (keys.length === 0) break;
        await command(from, "MIGRATE", "127.0.0.1", String(to.port), "", "0", "5000", "KEYS", ...keys);
      }
      // The new owner first, then the old one (which then sends its shard channels' subscribers away).
      await command(to, "CLUSTER", "SETSLOT", slot, "NODE", toId);
      await command(from, "CLUSTER", "SETSLOT", slot, "NODE", toId);
      for (const master of await masters()) {
        if (master !== from && master !== to) await command(master, "CLUSTER", "SETSLOT", slot, "NODE", toId);
      }
    },
    command,
    async stop() {
      for (const conn of admins.values()) conn.disconnect();
      admins.clear();
      await Promise.all(nodes.map((node) => node.stop()));
    },
  };
  await cluster.waitHealthy();
  // A fresh replica starts with a full sync: before it is done its master has nothing to fail
  // over to (and crier does not wait for it, broker/replicas.ts).
  await cluster.waitReplicated();
  return cluster;
}
