// Who may use the HTTP API: the bearer key, compared in constant time against
// every valid key, and the two limits on failed attempts that keep the key from
// being guessed (docs/security.md). Per address, an address over its failures
// is refused for the rest of the minute whatever key it sends. Per instance,
// once all addresses together are over theirs, every address that has failed
// this minute is refused too, so many addresses buy an attacker one guess each
// rather than a per-address allowance each; addresses that have not failed, and
// so hold the right key, are never slowed by others' failures.

import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { RateWindow } from "../limits/rate-window.js";
import type { Refusals } from "../limits/refusals.js";

const MINUTE_MS = 60_000;
/** The one key of the instance-wide window. */
const ALL = "";

export interface ApiAuthOptions {
  /** Every key accepted (more than one during a rotation). */
  apiKeys: readonly string[];
  /** Requests with a wrong or missing key per address per minute (limits.apiAuthFailuresPerMinute). */
  failuresPerMinute: number;
  /** The same across all addresses of this instance (limits.apiAuthFailuresPerMinuteTotal). */
  failuresPerMinuteTotal: number;
  refusals: Refusals;
  now?: () => number;
}

/** Why a request may not use the API: 401 without a valid key, 429 over a limit (with Retry-After). */
export type ApiAuthRefusal =
  | { code: "unauthorized"; message: string }
  | { code: "rate_limited"; message: string; retryAfterSeconds: number };

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

export class ApiAuth {
  private readonly options: ApiAuthOptions;
  private readonly keyDigests: Buffer[];
  private readonly perAddress: RateWindow;
  private readonly instance: RateWindow;

  constructor(options: ApiAuthOptions) {
    this.options = options;
    this.keyDigests = options.apiKeys.map(digest);
    this.perAddress = new RateWindow(options.failuresPerMinute, { windowMs: MINUTE_MS, now: options.now });
    this.instance = new RateWindow(options.failuresPerMinuteTotal, { windowMs: MINUTE_MS, now: options.now });
  }

  /** Undefined when `request` from `address` may use the API; otherwise why not. */
  check(request: IncomingMessage, address: string): ApiAuthRefusal | undefined {
    const header = request.headers.authorization ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(header);
    const given = match?.[1] === undefined ? undefined : digest(match[1].trim());
    // Compare digests, with every key: constant time whatever the given key's length or which key it is.
    let valid = false;
    for (const key of this.keyDigests) if (given !== undefined && timingSafeEqual(given, key)) valid = true;
    if (valid) return this.blocked(address);
    const addressOk = this.perAddress.take(address);
    const instanceOk = this.instance.take(ALL);
    if (addressOk && instanceOk) {
      return {
        code: "unauthorized",
        message: match === null ? "missing API key: send 'Authorization: Bearer API_KEY'" : "invalid API key",
      };
    }
    return addressOk ? this.instanceRefusal(address) : this.addressRefusal(address);
  }

  /** A request with a valid key: refused only while its address is over its limit, or has failed while the instance is. */
  private blocked(address: string): ApiAuthRefusal | undefined {
    if (this.perAddress.blocked(address)) return this.addressRefusal(address);
    if (this.instance.blocked(ALL) && this.perAddress.count(address) > 0) return this.instanceRefusal(address);
    return undefined;
  }

  private addressRefusal(address: string): ApiAuthRefusal {
    this.options.refusals.record("api_auth_failures", { address }, "HTTP API request refused: too many wrong keys");
    return {
      code: "rate_limited",
      message: `too many requests with a wrong API key from this address (limits.apiAuthFailuresPerMinute = ${this.options.failuresPerMinute}): wait a minute`,
      retryAfterSeconds: this.retryAfter(this.perAddress),
    };
  }

  private instanceRefusal(address: string): ApiAuthRefusal {
    this.options.refusals.record(
      "api_auth_failures_total",
      { address },
      "HTTP API request refused: too many wrong keys on this instance",
    );
    return {
      code: "rate_limited",
      message: `too many requests with a wrong API key on this instance (limits.apiAuthFailuresPerMinuteTotal = ${this.options.failuresPerMinuteTotal}), and this address sent one: wait a minute`,
      retryAfterSeconds: this.retryAfter(this.instance),
    };
  }

  private retryAfter(window: RateWindow): number {
    return Math.max(1, Math.ceil(window.remainingMs() / 1000));
  }
}
