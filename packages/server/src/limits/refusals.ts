// Every connection or request crier turns away for a limit or a policy:
// counted by reason for the metrics (crier_refused_total) and
// logged through a throttle, since an attacker decides how often it happens.

import type { Logger } from "pino";
import { ThrottledLog } from "./log-throttle.js";

export type RefusalReason =
  | "origin"
  | "max_connections"
  | "max_connections_per_ip"
  | "connections_per_second"
  | "connections_per_second_per_ip"
  | "max_connections_per_user"
  | "api_auth_failures"
  | "api_auth_failures_total"
  | "max_subscribers_per_room"
  | "body_too_large"
  | "unknown_session";

export class Refusals {
  private readonly log: ThrottledLog;
  private readonly counts = new Map<RefusalReason, number>();

  constructor(logger: Logger, options: { logIntervalMs?: number } = {}) {
    this.log = new ThrottledLog(logger, { intervalMs: options.logIntervalMs });
  }

  /** Counts one refusal and logs it (throttled per reason). */
  record(reason: RefusalReason, fields: Record<string, unknown>, message: string): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
    this.log.warn(reason, fields, message);
  }

  /** Refusals so far, by reason. */
  totals(): ReadonlyMap<RefusalReason, number> {
    return this.counts;
  }
}
