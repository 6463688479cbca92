// The engines (backplanes) crier runs on, as tests start them: each one's real
// servers on free ports, the configuration crier needs to use it, and what a
// test may ask the engine itself (how many subscribers a channel has). Tests
// that must hold on every engine loop over ENGINES; CRIER_TEST_ENGINES
// ("redis,redis-cluster") narrows the list when running a subset.
//
// Adding an engine: a new EngineKind whose start() runs its servers and whose
// Engine gives crier's flags and config keys for it.

import { ChannelNames } from "../../packages/server/src/broker/broker.js";
import { bucketKeys, encodeToken, NatsLink, natsNames } from "../../packages/server/src/nats/connection.js";
import { createClient, DEFAULT_PREFIX } from "../../packages/server/src/redis/connection.js";
import { type NatsProcess, startNats } from "./nats.js";
import { type RedisProcess, startRedis } from "./redis.js";
import { type RedisClusterProcess, startRedisCluster } from "./redis-cluster.js";

export interface Engine {
  readonly name: string;
  /** crier's command-line flags for this engine, e.g. ["--redis", url]. */
  readonly args: readonly string[];
  /** The same as configuration keys, for a config file or the library API. */
  readonly config: { redis?: string; nats?: string };
  /** The channel names crier uses on this engine, for a test that asks the engine about a room. */
  readonly names: ChannelNames;
  /** Subscribers of `channel` across the engine, as the engine itself counts them. */
  subscribers(channel: string): Promise<number>;
  /** A Redis command on the node that holds its key (Redis engines only), e.g. ["HEXISTS", key, field]. */
  redisCommand?(...args: string[]): Promise<unknown>;
  /** Whether the engine still stores a presence entry of `client` in `room` (default prefix). */
  presenceStored(room: string, client: string): Promise<boolean>;
  /** Kills the engine's server and starts it again with nothing stored (one-server engines only). */
  restartEmpty?(): Promise<void>;
  stop(): Promise<void>;
}

export interface RedisEngine extends Engine {
  readonly name: "redis";
  readonly redis: RedisProcess;
}

export interface RedisClusterEngine extends Engine {
  readonly name: "redis-cluster";
  readonly cluster: RedisClusterProcess;
}

export interface NatsEngine extends Engine {
  readonly name: "nats";
  readonly nats: NatsProcess;
}

export interface EngineKind {
  readonly name: string;
  start(options?: { prefix?: string }): Promise<Engine>;
}

/** One command on a fresh connection to `url` (a Cluster routes it by its key). */
async function redisCli(url: string, ...args: string[]): Promise<unknown> {
  const conn = createClient(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await conn.connect();
    const [name = "", ...rest] = args;
    return await conn.call(name, ...rest);
  } finally {
    conn.disconnect();
  }
}

/** The presence hash of a room under the default prefix (presence/redis.ts). */
function presenceKey(room: string): string {
  return `${DEFAULT_PREFIX}presence:{${room}}`;
}

/** The count PUBSUB NUMSUB or SHARDNUMSUB gives for the one channel asked about. */
function countOf(reply: unknown): number {
  return Array.isArray(reply) ? Number(reply[1]) : 0;
}

export const REDIS: EngineKind = {
  name: "redis",
  async start(options = {}): Promise<RedisEngine> {
    const redis = await startRedis();
    return {
      name: "redis",
      redis,
      args: ["--redis", redis.url],
      config: { redis: redis.url },
      names: new ChannelNames(options.prefix),
      subscribers: async (channel) => countOf(await redisCli(redis.url, "PUBSUB", "NUMSUB", channel)),
      redisCommand: (...args) => redisCli(redis.url, ...args),
      presenceStored: async (room, client) => (await redisCli(redis.url, "HEXISTS", presenceKey(room), client)) === 1,
      // Started without persistence: a restart is empty.
      restartEmpty: () => redis.restart(),
      stop: () => redis.stop(),
    };
  },
};

export const REDIS_CLUSTER: EngineKind = {
  name: "redis-cluster",
  async start(options = {}): Promise<RedisClusterEngine> {
    const cluster = await startRedisCluster();
    return {
      name: "redis-cluster",
      cluster,
      args: ["--redis", cluster.url],
      config: { redis: cluster.url },
      names: new ChannelNames(options.prefix, true),
      async subscribers(channel) {
        let total = 0;
        for (const master of await cluster.masters()) {
          total += countOf(await cluster.command(master, "PUBSUB", "SHARDNUMSUB", channel));
        }
        return total;
      },
      redisCommand: (...args) => redisCli(cluster.url, ...args),
      presenceStored: async (room, client) => (await redisCli(cluster.url, "HEXISTS", presenceKey(room), client)) === 1,
      stop: () => cluster.stop(),
    };
  },
};

export const NATS: EngineKind = {
  name: "nats",
  async start(options = {}): Promise<NatsEngine> {
    const nats = await startNats({ monitor: true });
    const subjects = natsNames(options.prefix ?? DEFAULT_PREFIX);
    return {
      name: "nats",
      nats,
      args: ["--nats", nats.url],
      config: { nats: nats.url },
      names: new ChannelNames(options.prefix),
      // Connections (one broker connection per instance) subscribed to the channel's subject.
      async subscribers(channel) {
        const subject = subjects.live(channel);
        const reply = await fetch(`${nats.monitorUrl ?? ""}/connz?subs=1&limit=1024`);
        const body = (await reply.json()) as { connections?: Array<{ subscriptions_list?: string[] }> };
        return (body.connections ?? []).filter((c) => c.subscriptions_list?.includes(subject) === true).length;
      },
      async presenceStored(room, client) {
        const link = new NatsLink("test", { url: nats.url });
        try {
          await link.start();
          // The entry's key names its instance and user too (presence/nats-bucket.ts): any of them.
          const keys = await bucketKeys(
            link,
            subjects.presenceBucket,
            `m.${encodeToken(room)}.*.*.${encodeToken(client)}`,
          );
          return keys.length > 0;
        } finally {
          await link.close();
        }
      },
      restartEmpty: () => nats.restart({ wipe: true }),
      stop: () => nats.stop(),
    };
  },
};

const ALL: readonly EngineKind[] = [REDIS, REDIS_CLUSTER, NATS];

/** The engines to test: all of them, or those CRIER_TEST_ENGINES names. */
export const ENGINES: readonly EngineKind[] = (() => {
  const wanted = process.env.CRIER_TEST_ENGINES?.split(",").map((name) => name.trim());
  return wanted === undefined ? ALL : ALL.filter((kind) => wanted.includes(kind.name));
})();
