// Error codes and close codes of the wire protocol, shared by the server and the SDK.
// Errors are values with a code; never bare strings.

export const ERROR_CODES = [
  "bad_request",
  "unauthorized",
  "forbidden",
  "not_subscribed",
  "already_subscribed",
  "too_large",
  "rate_limited",
  "unavailable",
  "internal",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** A command failed: sent to the client as an `error` frame, or to an HTTP caller as `{"error":{…}}`. */
export class ProtocolError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }
}

export const CloseCode = {
  /** Standard: a normal close (the client or the server is done). */
  Normal: 1000,
  /** Standard: the connection ended without a close frame (never sent; what an abrupt end is reported as). */
  Abnormal: 1006,
  /** Standard: the server met an error it could not serve the connection through (e.g. backplane down at connect). */
  ServerError: 1011,
  /** The first frame was not `connect`, or no `connect` came within the connect timeout. */
  ConnectExpected: 4001,
  /** Not JSON, not an object, or a binary frame on the JSON subprotocol. */
  BadFrame: 4002,
  Unauthorized: 4003,
  Forbidden: 4004,
  TokenExpired: 4005,
  MessageTooLarge: 4009,
  ShuttingDown: 4500,
  NoPong: 4502,
  SlowConsumer: 4503,
  /** Messages of a room were missed and could not be repaired from history: reconnect and recover (an addition to docs/protocol.md v1). */
  MessagesLost: 4504,
  RateLimited: 4508,
} as const;

export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode];

/**
 * Standard close codes after which a client should reconnect: going away,
 * abnormal, error, restart (docs/protocol.md), plus "no status" (1005), "try again
 * later" (1013) and "bad gateway" (1014), which proxies in front produce.
 */
const RECONNECTABLE_STANDARD = new Set([1001, 1005, 1006, 1011, 1012, 1013, 1014]);

/**
 * Whether a client should reconnect on its own after the server closed with `code`.
 * 4000–4499 are terminal, 4500–4999 transient; see docs/protocol.md "Close codes".
 */
export function shouldReconnect(code: number): boolean {
  if (code >= 4500 && code <= 4999) return true;
  if (code >= 4000 && code <= 4499) return false;
  return RECONNECTABLE_STANDARD.has(code);
}

/** A decision to end a connection: the close code, a short reason and whether the client should come back. */
export class Disconnect {
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason: string) {
    this.code = code;
    // A WebSocket close reason must fit in 123 bytes of UTF-8.
    this.reason = truncateUtf8(reason, 123);
  }
  get reconnect(): boolean {
    return shouldReconnect(this.code);
  }
}

// Made where it is used: a module-level encoder would stay in every bundle of the SDK, which has no use for it.
function truncateUtf8(text: string, maxBytes: number): string {
  const utf8 = new TextEncoder();
  let out = text;
  while (utf8.encode(out).length > maxBytes) out = out.slice(0, -1);
  return out;
}
