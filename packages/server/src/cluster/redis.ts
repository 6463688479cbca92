// Membership through Redis: each node rewrites its NodeInfo under a key whose
// TTL is the node timeout, so a node that stops heartbeating simply expires.
// Liveness is judged by Redis's clock alone: skew between nodes cannot keep a
// dead node listed or drop a live one.

import { ProtocolError } from "crier-protocol";
import { Cluster } from "ioredis";
import { type Logger, pino } from "pino";
import { messageOf } from "../describe-error.js";
import {
  connectionOptions,
  createClient,
  DEFAULT_PREFIX,
  quit,
  type RedisClient,
  redactUrl,
} from "../redis/connection.js";
import { isClusterUrl } from "../redis/url.js";
import { HeartbeatMembership } from "./heartbeats.js";
import { type Membership, type NodeInfo, parseNodeInfo } from "./membership.js";

export interface RedisMembershipOptions {
  url: string;
  /** Key prefix, shared with the broker's channel prefix by convention (default "crier:"). */
  prefix?: string;
  /** How often this node rewrites its entry (default 3000). */
  heartbeatMs?: number;
  /** How long an entry lives without a heartbeat; must exceed heartbeatMs (default 10000). */
  nodeTimeoutMs?: number;
  /** Bound on connecting and on every command (default 2000). */
  timeoutMs?: number;
  logger?: Logger;
}

// Lists the live entries among KEYS[2..] (the entries of the ids ARGV names,
// read from the index KEYS[1] just before) and prunes the index of expired
// ones, in one atomic step. Every key is declared, as Redis Cluster requires.
const LIST_LIVE = `
local out = {}
for i = 2, #KEYS do
  local value = redis.call('GET', KEYS[i])
  if value then out[#out + 1] = value else redis.call('SREM', KEYS[1], ARGV[i - 1]) end
end
return out`;

/**
 * Where a node's entry lives, present exactly while the node is live:
 * `${prefix}node:${id}` on one Redis; on Redis Cluster `${prefix}{nodes}:${id}`,
 * the index `${prefix}{nodes}` sharing their hash tag, so a heartbeat's
 * MULTI and the listing script stay on one slot.
 */
export function nodeKeyPrefix(prefix: string, cluster = false): string {
  return cluster ? `${prefix}{nodes}:` : `${prefix}node:`;
}

/** The set of node ids, beside their entries (see nodeKeyPrefix). */
export function nodeIndexKey(prefix: string, cluster: boolean): string {
  return cluster ? `${prefix}{nodes}` : `${prefix}nodes`;
}

export class RedisMembership extends HeartbeatMembership implements Membership {
  private readonly redis: RedisClient;
  private readonly url: string;
  protected readonly log: Logger;
  private readonly indexKey: string;
  private readonly entryPrefix: string;
  private readonly nodeTimeoutMs: number;

  constructor(options: RedisMembershipOptions) {
    const heartbeatMs = options.heartbeatMs ?? 3000;
    super("Redis", heartbeatMs);
    this.nodeTimeoutMs = options.nodeTimeoutMs ?? 10_000;
    if (!(heartbeatMs > 0) || !(this.nodeTimeoutMs > heartbeatMs)) {
      throw new Error(
        `membership: nodeTimeoutMs (${this.nodeTimeoutMs}) must exceed heartbeatMs (${heartbeatMs}) > 0, or live nodes would expire between heartbeats`,
      );
    }
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    const cluster = isClusterUrl(options.url);
    this.indexKey = nodeIndexKey(prefix, cluster);
    this.entryPrefix = nodeKeyPrefix(prefix, cluster);
    this.url = redactUrl(options.url);
    this.log = (options.logger ?? pino({ enabled: false })).child({ component: "membership" });
    // A heartbeat that cannot go now is dropped, not queued: the next one carries fresher counts.
    this.redis = createClient(
      options.url,
      connectionOptions({
        timeoutMs: options.timeoutMs ?? 2000,
        retryBaseMs: 100,
        retryMaxMs: 5000,
        connectionName: "crier-membership",
      }),
    );
    this.redis.on("error", (err: Error) => this.log.debug({ err }, "redis connection error"));
  }

  /** Rejects, naming the URL, if Redis is unreachable or the first heartbeat fails: a node must not start unseen. */
  async start(info: () => NodeInfo): Promise<void> {
    this.begin(info);
    try {
      await this.redis.connect();
      await this.heartbeat(true);
    } catch (err) {
      await this.close();
      throw new Error(`membership: cannot announce this node in Redis at ${this.url}: ${messageOf(err)}`);
    }
    // After a reconnect (Redis may have restarted empty) announce at once, not a heartbeat later.
    this.redis.on("ready", () => this.beat());
    this.beatEvery();
  }

  async nodes(): Promise<NodeInfo[]> {
    let reply: unknown;
    try {
      // A cluster client would queue the call until it is back (see createClient).
      if (this.redis instanceof Cluster && this.redis.status !== "ready") throw new Error("not connected");
      const ids = await this.redis.smembers(this.indexKey);
      const keys = ids.map((id) => this.entryPrefix + id);
      reply = ids.length === 0 ? [] : await this.redis.eval(LIST_LIVE, 1 + ids.length, this.indexKey, ...keys, ...ids);
    } catch (err) {
      throw new ProtocolError("unavailable", `cluster membership unavailable: Redis at ${this.url}: ${messageOf(err)}`);
    }
    if (!Array.isArray(reply)) throw new Error("membership: unexpected reply listing nodes");
    const nodes: NodeInfo[] = [];
    for (const text of reply) {
      const node = typeof text === "string" ? parseNodeInfo(text) : undefined;
      if (node === undefined) this.log.warn({ entry: String(text).slice(0, 200) }, "ignored a malformed node entry");
      else nodes.push(node);
    }
    return nodes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  protected async withdraw(): Promise<void> {
    const id = this.announcedId;
    if (id !== undefined && this.redis.status === "ready") {
      // Withdrawn at once so /api/info does not list a node that shut down cleanly.
      await this.redis
        .multi()
        .del(this.entryPrefix + id)
        .srem(this.indexKey, id)
        .exec()
        .catch((err: unknown) => this.log.warn({ err: messageOf(err) }, "could not withdraw node entry; it expires"));
    }
    await quit(this.redis);
  }

  protected async write(entry: NodeInfo): Promise<boolean> {
    const results = await this.redis
      .multi()
      .exists(this.entryPrefix + entry.id)
      .set(this.entryPrefix + entry.id, JSON.stringify(entry), "PX", this.nodeTimeoutMs)
      .sadd(this.indexKey, entry.id)
      .exec();
    // MULTI reports a failed command inside its results rather than by rejecting.
    const failed = results === null ? new Error("transaction aborted") : results.find(([e]) => e !== null)?.[0];
    if (failed) throw failed;
    return results?.[0]?.[1] === 1;
  }
}
