// Counts events per key in fixed one-second windows: "at most N per second
// per address". A fixed window lets up to 2N through across a boundary, which
// is fine for refusing floods; in exchange the state is one counter per key
// seen this second, dropped wholesale when the second ends, so an attacker
// with many addresses cannot grow it past one second's worth of connections.

export class RateWindow {
  private readonly limit: number;
  private readonly windowMs: number;
  private readonly now: () => number;
  private windowStart = Number.NEGATIVE_INFINITY;
  private counts = new Map<string, number>();

  constructor(limit: number, options: { windowMs?: number; now?: () => number } = {}) {
    this.limit = limit;
    this.windowMs = options.windowMs ?? 1000;
    this.now = options.now ?? Date.now;
  }

  /** Counts one event for `key`; false when the key is over its limit in this window (the event is still counted). */
  take(key: string): boolean {
    const now = this.now();
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.counts = new Map();
    }
    const count = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, count);
    return count <= this.limit;
  }

  /** Whether `key` is already over its limit in this window (counts nothing). */
  blocked(key: string): boolean {
    return this.count(key) > this.limit;
  }

  /** Events counted for `key` in the current window. */
  count(key: string): number {
    if (this.now() - this.windowStart >= this.windowMs) return 0;
    return this.counts.get(key) ?? 0;
  }

  /** Milliseconds until the current window ends (0 when none is open): a Retry-After. */
  remainingMs(): number {
    return Math.max(0, this.windowStart + this.windowMs - this.now());
  }

  /** Keys counted in the current window (for tests of the bound). */
  size(): number {
    return this.counts.size;
  }
}
