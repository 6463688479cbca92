// Verifies connection tokens with jose: HS256 with a shared secret, RS256/ES256
// with a PEM public key, or any JWKS-published key. Claims of docs/protocol.md "JWT
// claims": `sub` required, `exp` enforced, `info`, `rooms`, `publish`.

import type { JsonObject } from "crier-protocol";
import { ProtocolError } from "crier-protocol";
import {
  createRemoteJWKSet,
  errors,
  importSPKI,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
  jwtVerify,
} from "jose";
import type { Identity } from "./identity.js";

export interface JwtOptions {
  secret?: string;
  publicKey?: string;
  jwksUrl?: string;
  issuer?: string;
  audience?: string;
}

type KeySource = Uint8Array | Awaited<ReturnType<typeof importSPKI>> | JWTVerifyGetKey;

export class TokenVerifier {
  private readonly keys: Promise<{ key: KeySource; algorithms: string[] }[]>;
  private readonly options: JWTVerifyOptions;

  constructor(options: JwtOptions) {
    this.options = {};
    if (options.issuer !== undefined) this.options.issuer = options.issuer;
    if (options.audience !== undefined) this.options.audience = options.audience;
    this.keys = TokenVerifier.loadKeys(options);
    // Surface a bad key at start, not at the first connection.
    this.keys.catch(() => {});
  }

  /** Whether any key is configured. */
  static configured(options: JwtOptions): boolean {
    return options.secret !== undefined || options.publicKey !== undefined || options.jwksUrl !== undefined;
  }

  /** Rejects when a configured key cannot be used (e.g. a malformed PEM). */
  async ready(): Promise<void> {
    await this.keys;
  }

  private static async loadKeys(options: JwtOptions): Promise<{ key: KeySource; algorithms: string[] }[]> {
    const keys: { key: KeySource; algorithms: string[] }[] = [];
    if (options.secret !== undefined) {
      keys.push({ key: new TextEncoder().encode(options.secret), algorithms: ["HS256", "HS384", "HS512"] });
    }
    if (options.publicKey !== undefined) {
      const pem = options.publicKey.replace(/\\n/g, "\n");
      let lastError: unknown;
      for (const alg of ["RS256", "ES256", "PS256", "EdDSA"]) {
        try {
          keys.push({ key: await importSPKI(pem, alg), algorithms: [alg] });
          lastError = undefined;
          break;
        } catch (error) {
          lastError = error;
        }
      }
      if (lastError !== undefined) {
        throw new Error(`jwt.publicKey is not a PEM public key (SPKI) usable for RS256, ES256, PS256 or EdDSA`);
      }
    }
    if (options.jwksUrl !== undefined) {
      keys.push({
        key: createRemoteJWKSet(new URL(options.jwksUrl)),
        algorithms: ["RS256", "ES256", "PS256", "EdDSA"],
      });
    }
    return keys;
  }

  /** Verifies `token`; throws ProtocolError("unauthorized") saying what is wrong. */
  async verify(token: string): Promise<Identity> {
    const keys = await this.keys;
    let failure: unknown;
    for (const { key, algorithms } of keys) {
      try {
        const options = { ...this.options, algorithms };
        const { payload } =
          typeof key === "function" ? await jwtVerify(token, key, options) : await jwtVerify(token, key, options);
        return identityOf(payload);
      } catch (error) {
        failure = error;
        // A wrong algorithm for this key: try the next key.
        if (error instanceof errors.JOSEAlgNotAllowed) continue;
        break;
      }
    }
    throw describe(failure);
  }
}

/** A token past its `exp`: `unauthorized`, and the connection closes with 4005 rather than 4003. */
export class TokenExpiredError extends ProtocolError {
  constructor() {
    super("unauthorized", "token expired");
    this.name = "TokenExpiredError";
  }
}

function describe(error: unknown): ProtocolError {
  if (error instanceof ProtocolError) return error;
  if (error instanceof errors.JWTExpired) return new TokenExpiredError();
  if (error instanceof errors.JWTClaimValidationFailed) {
    return new ProtocolError("unauthorized", `token claim '${error.claim}' is invalid: ${error.reason}`);
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return new ProtocolError("unauthorized", "token signature is invalid");
  }
  if (error instanceof errors.JOSEAlgNotAllowed) {
    return new ProtocolError("unauthorized", "token is signed with an algorithm this server does not accept");
  }
  if (error instanceof errors.JWTInvalid || error instanceof errors.JWSInvalid) {
    return new ProtocolError("unauthorized", "token is not a valid JWT");
  }
  if (error instanceof errors.JOSEError) return new ProtocolError("unauthorized", `token rejected: ${error.message}`);
  return new ProtocolError("unauthorized", "token could not be verified");
}

function stringList(payload: JWTPayload, claim: string): string[] | undefined {
  const value = payload[claim];
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) {
    throw new ProtocolError(
      "unauthorized",
      `token claim '${claim}' must be an array of strings (rooms or room patterns)`,
    );
  }
  return value;
}

function identityOf(payload: JWTPayload): Identity {
  if (typeof payload.sub !== "string" || payload.sub === "") {
    throw new ProtocolError("unauthorized", "token has no 'sub' claim (the user id)");
  }
  const info = payload.info;
  if (info !== undefined && (typeof info !== "object" || info === null || Array.isArray(info))) {
    throw new ProtocolError("unauthorized", "token claim 'info' must be an object");
  }
  const identity: Identity = { user: payload.sub };
  if (info !== undefined) identity.info = info as JsonObject;
  const rooms = stringList(payload, "rooms");
  if (rooms !== undefined) identity.rooms = rooms;
  const publish = stringList(payload, "publish");
  if (publish !== undefined) identity.publish = publish;
  const subs = stringList(payload, "subs");
  if (subs !== undefined) identity.subs = subs;
  if (typeof payload.exp === "number") identity.expiresAt = payload.exp * 1000;
  return identity;
}
