// Connections per user in Redis (one Redis, Sentinel or Redis Cluster): per
// user one hash, `${prefix}userconns:{USER}`, field = instance id, value = that
// instance's count, so every script touches the user's slot alone. A crashed
// instance's counts go with its liveness: when the counts in the hash would
// refuse a connection, the instances behind them are asked whether they are
// still live (their membership keys, cluster/redis.ts, which on Redis Cluster
// are in another slot, so this happens outside the script), and the script is
// run again told which are dead: it deletes their fields and counts the rest.
// No count outlives its instance's heartbeat by more than the node timeout.
// Each instance writes absolute counts, so a lost write heals at the next
// change or rewrite.

import { ProtocolError } from "crier-protocol";
import type { Logger } from "pino";
import { liveNodes } from "../redis/liveness.js";
import { type ScriptCall, StoreConnection } from "../redis/store-connection.js";
import { LocalCounts, type UserConnections } from "./user-connections.js";

export interface RedisUserConnectionsOptions {
  url: string;
  prefix: string;
  /** This instance's id (its field in every hash). */
  nodeId: string;
  /** The membership's key prefix for node entries (cluster/redis.ts nodeKeyPrefix). */
  nodeKeyPrefix: string;
  /** A hash expires this long after its last write (default 1 h); live instances rewrite theirs well before. */
  ttlMs?: number;
  logger?: Logger;
}

// KEYS[1] the user's hash; ARGV: this node, this node's count if admitted, the
// limit, the TTL, then the instances known to be dead. Deletes the dead ones'
// fields and writes the count only if the total with it stays within the
// limit: returns 1 then, else the other instances counted (for the caller to
// ask whether they are all live).
const ACQUIRE_SCRIPT = `
for i = 5, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
local fields = redis.call('HGETALL', KEYS[1])
local others = 0
local counted = {}
for i = 1, #fields, 2 do
  if fields[i] ~= ARGV[1] then
    others = others + (tonumber(fields[i + 1]) or 0)
    counted[#counted + 1] = fields[i]
  end
end
if others + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return counted end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1`;

// KEYS[1] the user's hash; ARGV: this node, its count (0: remove the field), the TTL.
const SET_SCRIPT = `
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1`;

export class RedisUserConnections implements UserConnections {
  private readonly conn: StoreConnection;
  private readonly prefix: string;
  private readonly nodeId: string;
  private readonly nodeKeyPrefix: string;
  private readonly ttlMs: number;
  private readonly acquireScript: ScriptCall;
  private readonly setScript: ScriptCall;
  private readonly counts = new LocalCounts();
  /** Users whose count may be wrong in Redis (a write failed): written again once it is back. */
  private readonly unsure = new Set<string>();
  private readonly timer: NodeJS.Timeout;

  constructor(options: RedisUserConnectionsOptions) {
    this.prefix = options.prefix;
    this.nodeId = options.nodeId;
    this.nodeKeyPrefix = options.nodeKeyPrefix;
    this.ttlMs = options.ttlMs ?? 3_600_000;
    this.conn = new StoreConnection({
      url: options.url,
      component: "user-connections",
      logger: options.logger,
      onReconnect: () => this.rewriteQuietly(),
    });
    this.acquireScript = this.conn.script("crierUserConnsAcquire", 1, ACQUIRE_SCRIPT);
    this.setScript = this.conn.script("crierUserConnsSet", 1, SET_SCRIPT);
    // Hashes of users with long-lived connections must not expire under them.
    this.timer = setInterval(() => this.rewriteQuietly(), Math.floor(this.ttlMs / 3));
    this.timer.unref();
  }

  start(): Promise<void> {
    return this.conn.start();
  }

  async acquire(user: string, max: number): Promise<boolean> {
    // Reserved locally first, so two connects of one user racing here ask for 1 and 2, not 1 twice.
    const count = this.counts.add(user, 1);
    let admitted: boolean;
    try {
      admitted = await this.admit(user, count, max);
    } catch (error) {
      this.counts.add(user, -1);
      this.unsure.add(user);
      throw error instanceof ProtocolError ? error : new ProtocolError("unavailable", String(error));
    }
    if (!admitted) this.counts.add(user, -1);
    return admitted;
  }

  release(user: string): void {
    this.write(user, this.counts.add(user, -1));
  }

  async rewrite(): Promise<void> {
    const writes: Promise<void>[] = [];
    for (const [user, count] of this.counts.entries()) writes.push(this.set(user, count));
    for (const user of this.unsure) if (this.counts.get(user) === 0) writes.push(this.set(user, 0));
    await Promise.all(writes);
  }

  close(): Promise<void> {
    clearInterval(this.timer);
    return this.conn.close();
  }

  /**
   * Whether `count` connections here keep `user` within `max`: the counts as
   * they stand, and if they would refuse, once more without those of the
   * instances found dead meanwhile. (An instance found dead that comes back
   * within that round trip, and writes its count again before the second
   * script deletes it, goes uncounted for this user until it next writes it.)
   */
  private async admit(user: string, count: number, max: number): Promise<boolean> {
    const what = `counting connections of user ${user}`;
    const acquire = (dead: string[]): Promise<unknown> =>
      this.conn.call(what, () => this.acquireScript(this.key(user), this.nodeId, count, max, this.ttlMs, ...dead));
    const first = await acquire([]);
    if (first === 1) return true;
    const counted = Array.isArray(first) ? first.filter((node): node is string => typeof node === "string") : [];
    if (counted.length === 0) return false;
    const live = await this.conn.call(what, () => liveNodes(this.conn.redis, this.nodeKeyPrefix, counted));
    const dead = counted.filter((node) => !live.has(node));
    return dead.length > 0 && (await acquire(dead)) === 1;
  }

  private rewriteQuietly(): void {
    this.rewrite().catch((error: unknown) => {
      this.conn.log.warn({ err: error }, "could not write this instance's per-user connection counts");
    });
  }

  private write(user: string, count: number): void {
    this.set(user, count).catch(() => {
      // Written again when Redis is back (onReconnect); meanwhile the user may be refused early, never let past.
      this.unsure.add(user);
    });
  }

  private async set(user: string, count: number): Promise<void> {
    await this.conn.call(`writing connections of user ${user}`, () =>
      this.setScript(this.key(user), this.nodeId, count, this.ttlMs),
    );
    this.unsure.delete(user);
  }

  private key(user: string): string {
    return `${this.prefix}userconns:{${user}}`;
  }
}
