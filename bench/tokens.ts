// HS256 connection tokens for the generator's connections: the bench signs
// them with the secret its own crier instances get, or with the secret of an
// external deployment (--jwt-secret), so that every user of a plan is a real
// user on the server.

import { SignJWT } from "jose";
import type { ConnSpec } from "./generator/spec.js";

/** Tokens live a day: far past any bench run. */
const LIFETIME_SECONDS = 24 * 3600;

/** An HS256 JWT with `claims`, expiring in a day. */
export function signToken(secret: string, claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setExpirationTime(Math.floor(Date.now() / 1000) + LIFETIME_SECONDS)
    .sign(new TextEncoder().encode(secret));
}

/**
 * Gives connections tokens: those with a user get `sub` = their user; with
 * `anonymousAs`, the others get that `sub` (a deployment may refuse anonymous
 * connections, or anonymous sends). `extra` claims go into every token.
 */
export function withTokens(
  conns: ConnSpec[],
  secret: string,
  options: { anonymousAs?: string; extra?: Record<string, unknown> } = {},
): Promise<ConnSpec[]> {
  return Promise.all(
    conns.map(async (conn) => {
      const sub = conn.user ?? options.anonymousAs;
      if (sub === undefined) return conn;
      return { ...conn, token: await signToken(secret, { ...options.extra, sub }) };
    }),
  );
}
