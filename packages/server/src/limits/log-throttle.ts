// Log lines for refusals that an attacker can trigger at will: at most one
// line per reason per interval, carrying how many were refused meanwhile, so
// a flood shows in the log without filling the disk.

import type { Logger } from "pino";

export class ThrottledLog {
  private readonly logger: Logger;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(logger: Logger, options: { intervalMs?: number; now?: () => number } = {}) {
    this.logger = logger;
    this.intervalMs = options.intervalMs ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  /** Logs `message` at warn under `reason`, unless a line for `reason` went out less than an interval ago. */
  warn(reason: string, fields: Record<string, unknown>, message: string): void {
    const now = this.now();
    const entry = this.last.get(reason);
    if (entry !== undefined && now - entry.at < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.last.set(reason, { at: now, suppressed: 0 });
    this.logger.warn(
      suppressed > 0 ? { ...fields, reason, suppressedSinceLastLine: suppressed } : { ...fields, reason },
      message,
    );
  }
}
