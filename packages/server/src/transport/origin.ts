// The origin policy (allowedOrigins) for the HTTP fallback's endpoints, in one
// function so that every endpoint applies the same rule and it can change in
// one place.

import type { IncomingMessage } from "node:http";

/**
 * Whether `request` may be served: requests without an Origin header (not
 * from a browser) always may; browsers' only when allowedOrigins lists their
 * origin, or is undefined or ["*"].
 */
export function originAllowed(request: IncomingMessage, allowedOrigins: readonly string[] | undefined): boolean {
  const origin = request.headers.origin;
  if (origin === undefined || allowedOrigins === undefined || allowedOrigins.includes("*")) return true;
  return allowedOrigins.includes(origin);
}
