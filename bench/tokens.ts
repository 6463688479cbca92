// HS256 connection tokens for the generator's connections: the bench signs
// them with the secret its own crier instances get, or with the secret of an
// external deployment (--jwt-secret), so that every user of a plan is a real
// user on the server.

import { createHmac } from "node:crypto";
import type { ConnSpec } from "./generator/spec.js";

/** Tokens live a day: far past any bench run. */
const LIFETIME_SECONDS = 24 * 3600;

/** An HS256 JWT with `claims`, expiring in a day. */
export function signToken(secret: string, claims: Record<string, unknown>): string {
  const encode = (value: object): string => Buffer.from(JSON.stringify(value)).toString("base64url");
  const exp = Math.floor(Date.now() / 1000) + LIFETIME_SECONDS;
  const body = `${encode({ alg: "HS256", typ: "JWT" })}.${encode({ ...claims, exp })}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
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
): ConnSpec[] {
  return conns.map((conn) => {
    const sub = conn.user ?? options.anonymousAs;
    if (sub === undefined) return conn;
    return { ...conn, token: signToken(secret, { ...options.extra, sub }) };
  });
}
