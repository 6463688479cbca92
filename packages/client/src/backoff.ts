// Reconnect delays: exponential from a minimum to a maximum, with jitter so that the
// clients of a restarted instance do not all come back in the same millisecond.
// A pure function of the attempt number (random injected), so it is tested exactly.

export type Jitter = "full" | "equal";

export interface BackoffOptions {
  minDelayMs: number;
  maxDelayMs: number;
  /** full: uniform in [0, ceiling]; equal: uniform in [ceiling/2, ceiling]. */
  jitter: Jitter;
}

/** The ceiling for `attempt` (0 for the first retry): min * 2^attempt, capped at max. */
export function backoffCeiling(attempt: number, options: BackoffOptions): number {
  // 2^31 already exceeds any sane max; capping the exponent keeps the product finite.
  const exponent = Math.min(Math.max(0, Math.floor(attempt)), 31);
  return Math.min(options.maxDelayMs, options.minDelayMs * 2 ** exponent);
}

/** The delay before retry number `attempt`, in whole milliseconds. `random` returns a value in [0, 1). */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = backoffCeiling(attempt, options);
  const r = Math.min(Math.max(random(), 0), 1);
  const delay = options.jitter === "full" ? r * ceiling : ceiling / 2 + (r * ceiling) / 2;
  return Math.round(delay);
}
