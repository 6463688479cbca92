// Shared by the Redis-backed parts (broker, membership): reconnect backoff, URL
// redaction for logs, and closing a connection without hanging.

import type { Redis } from "ioredis";

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
