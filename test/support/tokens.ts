// Signs connection tokens for tests.

import { SignJWT } from "jose";

export const JWT_SECRET = "test-secret-that-is-long-enough-for-hs256";

export async function token(
  claims: Record<string, unknown> & { sub?: string },
  options: { expiresInSeconds?: number; secret?: string } = {},
): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt();
  if (options.expiresInSeconds !== undefined) {
    jwt.setExpirationTime(Math.floor(Date.now() / 1000) + options.expiresInSeconds);
  }
  return jwt.sign(new TextEncoder().encode(options.secret ?? JWT_SECRET));
}
