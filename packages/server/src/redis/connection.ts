// Shared by the Redis-backed parts (broker, membership, stores): how a URL
// becomes a connection (one Redis, or a master found through Sentinel),
// reconnect backoff, URL redaction for logs, and closing without hanging.

import { Redis, type RedisOptions } from "ioredis";
import { parseSentinelUrl, SENTINEL_SCHEME } from "./url.js";

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
export async function quit(conn: Redis): Promise<void> {
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
