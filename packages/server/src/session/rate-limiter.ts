// A token bucket per connection: `rate` commands per second with bursts of up
// to `rate`. Going over gives `rate_limited` errors; a client that keeps going
// until it owes a whole second's worth is closed with 4508.

export type RateVerdict = "ok" | "limited" | "abusive";

/** Shared by every limiter: a bound function per connection would cost memory for nothing. */
const monotonicNow = (): number => performance.now();

export class RateLimiter {
  private tokens: number;
  private last: number;
  private readonly rate: number;
  private readonly now: () => number;

  constructor(ratePerSecond: number, now: () => number = monotonicNow) {
    this.rate = ratePerSecond;
    this.tokens = ratePerSecond;
    this.now = now;
    this.last = now();
  }

  take(): RateVerdict {
    const now = this.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    this.tokens -= 1;
    if (this.tokens >= 0) return "ok";
    return this.tokens <= -this.rate ? "abusive" : "limited";
  }
}
