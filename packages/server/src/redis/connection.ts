// Shared by the Redis-backed parts (broker, membership, stores): how a URL
// becomes a connection (one Redis, a master found through Sentinel, or a
// Redis Cluster),
// reconnect backoff, URL redaction for logs, and closing without hanging.

import { ProtocolError } from "crier-protocol";
import { Cluster, Redis, type RedisOptions } from "ioredis";
import { isClusterUrl, parseClusterUrl, parseSentinelUrl, SENTINEL_SCHEME } from "./url.js";

/** A connection for commands: to one Redis, or to every master of a Redis Cluster. */
export type RedisClient = Redis | Cluster;

/** The prefix of every channel and key crier names in Redis, unless configured (`redisPrefix`). */
export const DEFAULT_PREFIX = "crier:";

/** Replies Redis gives while it cannot serve writes for now: unavailable, not a bug. */
const TRANSIENT_REPLY = /^(LOADING|OOM|READONLY|MASTERDOWN|BUSY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS)\b/;

export interface ConnectionPolicy {
  /** Bound on connecting and on every command. */
  timeoutMs: number;
  /** Reconnect backoff: first delay and cap, with jitter. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** CLIENT SETNAME, to find the connection in CLIENT LIST. */
  connectionName: string;
}

/**
 * The ioredis options every crier connection shares: nothing queued or resent
 * while Redis is down, so a call fails fast with `unavailable` rather than
 * become a late (or, if resent, duplicate) write its caller was never told of;
 * reconnects with backoff and jitter; a short graceful close. Commands are
 * pipelined as on every ioredis connection; ioredis's auto-pipelining (one
 * write per tick) stays off: its per-tick Pipeline cost more CPU than it saved
 * (`npm run bench -- sparse`, profiled with bench/profile.ts).
 */
export function connectionOptions(policy: ConnectionPolicy): RedisOptions {
  return {
    lazyConnect: true,
    connectTimeout: policy.timeoutMs,
    commandTimeout: policy.timeoutMs,
    retryStrategy: (attempt: number) => backoffDelay(attempt, policy.retryBaseMs, policy.retryMaxMs),
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    // How long disconnect() waits for a graceful close before destroying the socket:
    // short, so a forced reconnect of a dead socket and close() while down are quick.
    disconnectTimeout: 200,
    connectionName: policy.connectionName,
  };
}

export type ScriptCall = (...args: Array<string | number>) => Promise<unknown>;

/** Defines a Lua script as a command on `redis` (EVALSHA, and EVAL once after a NOSCRIPT, e.g. after a Redis restart). */
export function defineScript(redis: RedisClient, name: string, numberOfKeys: number, lua: string): ScriptCall {
  redis.defineCommand(name, { numberOfKeys, lua });
  const command: unknown = Reflect.get(redis, name);
  if (typeof command !== "function") throw new Error(`redis: defining the ${name} script failed`);
  return (...args) => Promise.resolve(command.apply(redis, args));
}

/**
 * What a failed command means for its caller. Unreachable, timed out or
 * refusing writes for now: `unavailable` (a timed-out call may still have run:
 * a false failure, never a false success). Any other error reply is a bug:
 * `internal`, and `bug` says so, so the caller logs it.
 */
export function redisFailure(what: string, err: unknown): { error: ProtocolError; bug: boolean } {
  if (err instanceof ProtocolError) return { error: err, bug: false };
  const cause = err instanceof Error ? err : new Error(String(err));
  if (cause.name === "ReplyError" && !TRANSIENT_REPLY.test(cause.message)) {
    return { error: new ProtocolError("internal", `${what} failed: ${cause.message}`), bug: true };
  }
  return { error: new ProtocolError("unavailable", `${what} failed: ${cause.message}`), bug: false };
}

/** Throws when `prefix` would move or break the hash tag `{room}` that keeps a room's keys in one slot. */
export function checkKeyPrefix(component: string, prefix: string): void {
  if (/[{}]/.test(prefix)) {
    throw new Error(`${component}: the key prefix "${prefix}" must not contain braces`);
  }
}

/**
 * A connection to `url`: redis:// or rediss:// as ioredis takes them, or
 * redis+sentinel:// (the master the sentinels name, asked again on every
 * reconnect, so a failover is followed).
 */
export function createRedis(url: string, options: RedisOptions): Redis {
  if (!url.startsWith(SENTINEL_SCHEME)) return new Redis(url, options);
  const { sentinels, name, password, username, db, sentinelPassword } = parseSentinelUrl(url);
  return new Redis({
    ...options,
    sentinels,
    name,
    ...(password === undefined ? {} : { password }),
    ...(username === undefined ? {} : { username }),
    ...(db === undefined ? {} : { db }),
    ...(sentinelPassword === undefined ? {} : { sentinelPassword }),
  });
}

/**
 * A client for `url`: a Cluster for redis+cluster:// (commands routed by slot,
 * MOVED and ASK followed, the slot map refreshed after a failover), a Redis
 * otherwise (see createRedis). `resend: false` for a client whose writes
 * must never run twice.
 */
export function createClient(url: string, options: RedisOptions, { resend = true } = {}): RedisClient {
  if (!isClusterUrl(url)) return createRedis(url, options);
  const { nodes, tls, password, username } = parseClusterUrl(url);
  const { retryStrategy, enableOfflineQueue, lazyConnect, ...nodeOptions } = options;
  return new Cluster(nodes, {
    lazyConnect: true,
    // Unlike on one Redis, this must stay on: without it ioredis fails the
    // commands sent to a master whose connection is still being opened
    // ("Connection is closed"). Nothing waits in it while the cluster is down:
    // the broker and the stores refuse a call unless the client is ready.
    enableOfflineQueue: true,
    clusterRetryStrategy: (attempt) => (typeof retryStrategy === "function" ? retryStrategy(attempt) : 100),
    // A command whose master's connection closed under it (a failover) is
    // sent again once the slot map is read again, unless `resend` is false:
    // it may have run, and the broker's append+publish must then fail as
    // `unavailable` rather than risk a duplicate. Reads and the stores'
    // idempotent writes are resent. Replies that say a command did not run
    // (CLUSTERDOWN, TRYAGAIN, MOVED, ASK) are retried either way, a bounded
    // number of times.
    retryDelayOnFailover: resend ? 100 : 0,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    maxRedirections: 8,
    // Notices resharding even on a connection that gets no MOVED.
    slotsRefreshInterval: 2000,
    slotsRefreshTimeout: options.connectTimeout ?? 2000,
    redisOptions: {
      ...nodeOptions,
      ...(password === undefined ? {} : { password }),
      ...(username === undefined ? {} : { username }),
      ...(tls ? { tls: {} } : {}),
    },
  });
}

/** The options for a plain connection to one node of the cluster `url` (auth, TLS), or undefined when `url` is not a cluster. */
export function clusterNodeOptions(url: string): RedisOptions | undefined {
  if (!isClusterUrl(url)) return undefined;
  const { tls, password, username } = parseClusterUrl(url);
  return {
    ...(password === undefined ? {} : { password }),
    ...(username === undefined ? {} : { username }),
    ...(tls ? { tls: {} } : {}),
  };
}

/**
 * Delay before reconnect attempt `attempt` (1-based): exponential up to `maxMs`,
 * with "equal jitter" (half fixed, half random) so the delay still grows while
 * instances cut off by the same outage spread their reconnects out.
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** The URL with any password masked, for logs and error messages. */
export function redactUrl(url: string): string {
  if (isClusterUrl(url)) {
    return url.replace(
      /^(rediss?\+cluster:\/\/)([^@/]*:)?[^@/]*@/,
      (_all, scheme: string, user?: string) => `${scheme}${user ?? ""}***@`,
    );
  }
  if (url.startsWith(SENTINEL_SCHEME)) {
    // Not a WHATWG URL (several hosts): mask what sits between "//" and "@", and the sentinel password.
    return url.replace(/^(redis\+sentinel:\/\/)[^@/]*@/, "$1***@").replace(/([?&]sentinelPassword=)[^&]*/, "$1***");
  }
  try {
    const parsed = new URL(url);
    if (parsed.password === "") return url;
    parsed.password = "***";
    return parsed.toString();
  } catch {
    return url;
  }
}

/** QUIT when connected (Redis finishes what it has and closes); otherwise drop the socket and any reconnect timer. */
export async function quit(conn: RedisClient): Promise<void> {
  if (conn.status === "ready") {
    try {
      await conn.quit();
      return;
    } catch {
      // Not answered in time: fall through and drop the socket.
    }
  }
  // After QUIT a further disconnect() would arm ioredis's disconnectTimeout for a stream already closing.
  if (conn.status !== "end") conn.disconnect();
}
