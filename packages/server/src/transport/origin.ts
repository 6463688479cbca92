// The origin policy of browser connections, shared by every transport that a
// page can open (the WebSocket endpoint today, an HTTP fallback later).
// Browsers send `Origin` on WebSocket upgrades and cross-site fetches; a page
// on another site must not ride the user's cookies into crier (cross-site
// WebSocket hijacking), so by default only the request's own host is allowed.

import type { IncomingMessage } from "node:http";

/** Decides whether a request that sent `origin` (undefined: no Origin header) may connect to `host`. */
export type OriginPolicy = (origin: string | undefined, host: string | undefined) => boolean;

/**
 * Builds the policy for `allowedOrigins`:
 * - undefined or empty: same origin only (the Origin's host and port are the request's Host);
 * - a list with "*": any origin;
 * - otherwise: origins equal to an entry, or matching one whose `*` stands
 *   for any run of characters (`https://*.example.com`, `http://localhost:*`).
 * A request without Origin (not a browser) is always allowed: it cannot carry
 * a visitor's cookies from another site.
 */
export function originPolicy(allowedOrigins: readonly string[] | undefined): OriginPolicy {
  if (allowedOrigins?.includes("*")) return () => true;
  if (allowedOrigins === undefined || allowedOrigins.length === 0) {
    return (origin, host) => origin === undefined || sameOrigin(origin, host);
  }
  const exact = new Set<string>();
  const patterns: RegExp[] = [];
  for (const entry of allowedOrigins) {
    const normal = entry.toLowerCase().replace(/\/+$/, "");
    if (normal.includes("*")) patterns.push(globToRegExp(normal));
    else exact.add(normal);
  }
  return (origin) => {
    if (origin === undefined) return true;
    const normal = origin.toLowerCase();
    return exact.has(normal) || patterns.some((pattern) => pattern.test(normal));
  };
}

/** A problem with an allowedOrigins entry, for the config's error message; undefined when it is fine. */
export function originEntryProblem(entry: string): string | undefined {
  if (entry === "*") return undefined;
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#\s]+\/?$/i.test(entry)) {
    return `"${entry}" is not an origin: write scheme://host[:port], e.g. "https://app.example.com" or "https://*.example.com", or "*" for any`;
  }
  return undefined;
}

/** Whether `origin` names the same host and port as the request's Host header (the scheme may differ behind a TLS proxy). */
function sameOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined || host === "") return false;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // "null" (sandboxed pages, file://) and other non-URLs
  }
  const wanted = host.toLowerCase();
  if (url.host === wanted) return true;
  // URL drops a default port that a Host header may spell out.
  const port = url.protocol === "https:" || url.protocol === "wss:" ? "443" : "80";
  return url.port === "" && `${url.hostname}:${port}` === wanted;
}

function globToRegExp(pattern: string): RegExp {
  const body = pattern
    .split("*")
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
    .join("[^/]*");
  return new RegExp(`^${body}$`);
}

/** Whether `request` may be served under `allowedOrigins` (the HTTP fallback's endpoints ask this). */
export function originAllowed(request: IncomingMessage, allowedOrigins: readonly string[] | undefined): boolean {
  return originPolicy(allowedOrigins)(request.headers.origin, request.headers.host);
}
