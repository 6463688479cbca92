// Token verification (HS256, RS256 public key, JWKS), room patterns and the
// namespace policies.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, test } from "node:test";
import { ProtocolError } from "crier-protocol";
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose";
import { namespaceSchema } from "../config/schema.js";
import { matchesRoom } from "./glob.js";
import { TokenVerifier } from "./jwt.js";
import { RoomPolicy } from "./policy.js";

const SECRET = "a-secret-long-enough-for-hs256-tokens";
type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;

async function rejectsWith(promise: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ProtocolError);
    assert.equal(error.code, "unauthorized");
    assert.match(error.message, message);
    return true;
  });
}

describe("TokenVerifier", () => {
  test("HS256: claims become the identity", async () => {
    const verifier = new TokenVerifier({ secret: SECRET });
    const token = await new SignJWT({ info: { name: "A" }, rooms: ["chat:*"], publish: ["chat:1"] })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("alice")
      .setExpirationTime("1h")
      .sign(new TextEncoder().encode(SECRET));
    const identity = await verifier.verify(token);
    assert.equal(identity.user, "alice");
    assert.deepEqual(identity.info, { name: "A" });
    assert.deepEqual(identity.rooms, ["chat:*"]);
    assert.deepEqual(identity.publish, ["chat:1"]);
    assert.ok((identity.expiresAt ?? 0) > Date.now());
  });

  test("issuer and audience are enforced when configured", async () => {
    const verifier = new TokenVerifier({ secret: SECRET, issuer: "https://auth", audience: "crier" });
    const sign = (claims: { iss?: string; aud?: string }) => {
      const jwt = new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("u");
      if (claims.iss !== undefined) jwt.setIssuer(claims.iss);
      if (claims.aud !== undefined) jwt.setAudience(claims.aud);
      return jwt.sign(new TextEncoder().encode(SECRET));
    };
    assert.equal((await verifier.verify(await sign({ iss: "https://auth", aud: "crier" }))).user, "u");
    await rejectsWith(verifier.verify(await sign({ iss: "https://other", aud: "crier" })), /'iss'/);
    await rejectsWith(verifier.verify(await sign({ iss: "https://auth", aud: "another-service" })), /'aud'/);
    await rejectsWith(verifier.verify(await sign({ aud: "crier" })), /'iss'/);
    await rejectsWith(verifier.verify(await sign({ iss: "https://auth" })), /'aud'/);
    // Unconfigured, neither is checked.
    const open = new TokenVerifier({ secret: SECRET });
    assert.equal((await open.verify(await sign({ iss: "https://other", aud: "another-service" }))).user, "u");
  });

  test("claims of the wrong type are refused", async () => {
    const verifier = new TokenVerifier({ secret: SECRET });
    const sign = (claims: Record<string, unknown>) =>
      new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setSubject("u").sign(new TextEncoder().encode(SECRET));
    await rejectsWith(verifier.verify(await sign({ rooms: "chat:*" })), /'rooms'/);
    await rejectsWith(verifier.verify(await sign({ info: [1] })), /'info'/);
  });

  test("RS256 with a PEM public key; an HS256 token is refused by it", async () => {
    const { publicKey, privateKey } = await generateKeyPair("RS256");
    const verifier = new TokenVerifier({ publicKey: await exportSPKI(publicKey) });
    const token = await new SignJWT({}).setProtectedHeader({ alg: "RS256" }).setSubject("rsa-user").sign(privateKey);
    assert.equal((await verifier.verify(token)).user, "rsa-user");
    const hs = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("x")
      .sign(new TextEncoder().encode(SECRET));
    await rejectsWith(verifier.verify(hs), /algorithm/);
  });

  test("a malformed public key is reported at start", async () => {
    await assert.rejects(new TokenVerifier({ publicKey: "not a key" }).ready(), /jwt.publicKey/);
  });

  test("JWKS: keys are fetched from the URL and selected by kid", async () => {
    // Three keys of one algorithm: only the kid tells which one verifies a token.
    const pairs = await Promise.all(["k1", "k2", "k3"].map(() => generateKeyPair("ES256")));
    const keys = await Promise.all(
      pairs.map(async ({ publicKey }, i) => ({
        ...(await exportJWK(publicKey)),
        kid: `k${i + 1}`,
        alg: "ES256",
        use: "sig",
      })),
    );
    const server = createServer((_request, response) => {
      response.writeHead(200, { "Content-Type": "application/json" });
      response.end(JSON.stringify({ keys }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const sign = (kid: string, key: KeyPair["privateKey"], sub: string) =>
      new SignJWT({}).setProtectedHeader({ alg: "ES256", kid }).setSubject(sub).sign(key);
    try {
      const { port } = server.address() as AddressInfo;
      const verifier = new TokenVerifier({ jwksUrl: `http://127.0.0.1:${port}/jwks.json` });
      for (const [i, { privateKey }] of pairs.entries()) {
        assert.equal(
          (await verifier.verify(await sign(`k${i + 1}`, privateKey, `user-${i + 1}`))).user,
          `user-${i + 1}`,
        );
      }
      const [first, second] = pairs;
      assert.ok(first && second);
      // Signed with k2's key but naming k1: k1 is the key tried, and it does not match.
      await rejectsWith(verifier.verify(await sign("k1", second.privateKey, "x")), /signature/);
      // A kid the set does not have is refused, whichever key signed it.
      await rejectsWith(verifier.verify(await sign("k9", first.privateKey, "x")), /no applicable key/);
      const other = await generateKeyPair("ES256");
      await rejectsWith(verifier.verify(await sign("k1", other.privateKey, "x")), /signature/);
    } finally {
      server.close();
    }
  });
});

describe("room patterns", () => {
  test("* matches any run (including ':'), ? one character, everything else itself", () => {
    assert.ok(matchesRoom("workspace:42:*", "workspace:42:doc:7"));
    assert.ok(!matchesRoom("workspace:42:*", "workspace:43:doc"));
    assert.ok(matchesRoom("chat:?", "chat:1"));
    assert.ok(!matchesRoom("chat:?", "chat:12"));
    assert.ok(matchesRoom("a.b", "a.b"));
    assert.ok(!matchesRoom("a.b", "axb"), "regex characters are literal");
  });
});

describe("RoomPolicy", () => {
  const ns = (value: Record<string, unknown>) => namespaceSchema.parse(value);
  const policy = new RoomPolicy({
    default: ns({}),
    secret: ns({ subscribe: "token", publish: "token" }),
    feed: ns({ publish: "none" }),
  });
  const forbidden = (fn: () => void) =>
    assert.throws(fn, (error: unknown) => error instanceof ProtocolError && error.code === "forbidden");

  test("default: anyone subscribes, subscribers publish", () => {
    policy.check({ user: "" }, "lobby", "subscribe", false);
    policy.check({ user: "" }, "lobby", "publish", true);
    forbidden(() => policy.check({ user: "" }, "lobby", "publish", false));
  });

  test("an unlisted namespace follows default", () => {
    policy.check({ user: "" }, "other:1", "subscribe", false);
    assert.equal(policy.describe("other:1"), "the default namespace");
  });

  test("token namespaces follow the claims; none refuses everyone", () => {
    forbidden(() => policy.check({ user: "u" }, "secret:1", "subscribe", false));
    policy.check({ user: "u", rooms: ["secret:*"] }, "secret:1", "subscribe", false);
    forbidden(() => policy.check({ user: "u", rooms: ["secret:*"] }, "secret:1", "publish", true));
    policy.check({ user: "u", publish: ["secret:1"] }, "secret:1", "publish", false);
    forbidden(() => policy.check({ user: "u", publish: ["*"] }, "feed:x", "publish", true));
  });
});
