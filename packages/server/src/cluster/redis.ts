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

export class RedisMembership implements Membership {
  private readonly redis: RedisClient;
  private readonly url: string;
  private readonly log: Logger;
  private readonly indexKey: string;
  private readonly entryPrefix: string;
  private readonly heartbeatMs: number;
  private readonly nodeTimeoutMs: number;
  private info: (() => NodeInfo) | undefined;
  /** The id this node announced, so close() withdraws that entry even if info() changed. */
  private announcedId: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private failing = false;
  private readonly rejoinListeners: Array<() => void> = [];
  private closing: Promise<void> | undefined;

  constructor(options: RedisMembershipOptions) {
    this.heartbeatMs = options.heartbeatMs ?? 3000;
    this.nodeTimeoutMs = options.nodeTimeoutMs ?? 10_000;
    if (!(this.heartbeatMs > 0) || !(this.nodeTimeoutMs > this.heartbeatMs)) {
      throw new Error(
        `membership: nodeTimeoutMs (${this.nodeTimeoutMs}) must exceed heartbeatMs (${this.heartbeatMs}) > 0, or live nodes would expire between heartbeats`,
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
    if (this.info !== undefined || this.closing) throw new Error("membership: start() called twice or after close()");
    this.info = info;
    try {
      await this.redis.connect();
      await this.heartbeat(true);
    } catch (err) {
      await this.close();
      throw new Error(`membership: cannot announce this node in Redis at ${this.url}: ${messageOf(err)}`);
    }
    // After a reconnect (Redis may have restarted empty) announce at once, not a heartbeat later.
    this.redis.on("ready", () => {
      if (this.timer !== undefined && this.beating === undefined) {
        this.beating = this.heartbeat(false).finally(() => (this.beating = undefined));
      }
    });
    this.timer = setInterval(() => {
      // Skip a tick rather than pile heartbeats up behind a slow Redis.
      if (this.beating === undefined) this.beating = this.heartbeat(false).finally(() => (this.beating = undefined));
    }, this.heartbeatMs);
    this.timer.unref();
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

  onRejoin(listener: () => void): void {
    this.rejoinListeners.push(listener);
  }

  close(): Promise<void> {
    this.closing ??= this.withdraw();
    return this.closing;
  }

  /** Stops the heartbeat without withdrawing the entry, as a crash would. */
  protected stopHeartbeat(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async withdraw(): Promise<void> {
    this.stopHeartbeat();
    await this.beating;
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

  private async heartbeat(first: boolean): Promise<void> {
    const info = this.info;
    if (info === undefined) return;
    const entry: NodeInfo = { ...info(), updatedAt: Date.now() };
    try {
      const results = await this.redis
        .multi()
        .exists(this.entryPrefix + entry.id)
        .set(this.entryPrefix + entry.id, JSON.stringify(entry), "PX", this.nodeTimeoutMs)
        .sadd(this.indexKey, entry.id)
        .exec();
      // MULTI reports a failed command inside its results rather than by rejecting.
      const failed = results === null ? new Error("transaction aborted") : results.find(([e]) => e !== null)?.[0];
      if (failed) throw failed;
      const existed = results?.[0]?.[1] === 1;
      this.announcedId = entry.id;
      if (this.failing) this.log.info("heartbeats reach Redis again");
      this.failing = false;
      if (!first && !existed) {
        this.log.warn("this node had dropped out of the cluster (stalled, or Redis lost its entry): announced again");
        for (const listener of this.rejoinListeners) listener();
      }
    } catch (err) {
      if (first) throw err;
      // Logged once per outage; the node drops out of the list if it lasts past the timeout.
      if (!this.failing) this.log.warn({ err: messageOf(err) }, "heartbeat failed");
      this.failing = true;
    }
  }
}
