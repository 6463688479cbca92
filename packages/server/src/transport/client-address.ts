// The address a request counts against (per-address limits, wrong-key
// limits): the TCP peer, or behind `trustProxy` proxies the address the
// nearest of them saw, taken from the right end of X-Forwarded-For where the
// trusted proxies appended it. Entries further left are written by the client
// and could be anything, so they are never used.

import type { IncomingMessage } from "node:http";

export function clientAddress(request: IncomingMessage, trustedHops: number): string {
  const peer = request.socket.remoteAddress ?? "unknown";
  if (trustedHops === 0) return peer;
  const header = request.headers["x-forwarded-for"];
  const text = Array.isArray(header) ? header.join(",") : (header ?? "");
  const hops = text
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  // With N trusted proxies, the last N entries were written by them; the Nth from the right is the client as the outermost saw it.
  return hops[hops.length - trustedHops] ?? hops[0] ?? peer;
}
