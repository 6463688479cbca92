// What an operator should hear about, counted by kind, with the last few of
// each instance kept for the console's "recent warnings" (time and detail).
// Recording is O(1) and bounded, so a client flooding the rate limit costs
// the same ring slot over and over, never memory.

export type WarningKind =
  | "slow_consumer"
  | "rate_limited"
  | "backplane_lost"
  | "backplane_back"
  | "origin_refused"
  | "connection_limit"
  | "auth_failed"
  | "body_too_large"
  | "unknown_session";

export const WARNING_KINDS: readonly WarningKind[] = [
  "slow_consumer",
  "rate_limited",
  "backplane_lost",
  "backplane_back",
  "origin_refused",
  "connection_limit",
  "auth_failed",
  "body_too_large",
  "unknown_session",
];

export interface Warning {
  kind: WarningKind;
  /** Epoch milliseconds. */
  at: number;
  detail: string;
}

export class WarningLog {
  private readonly counts = new Map<WarningKind, number>();
  private readonly ring: Warning[] = [];
  private next = 0;
  private readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  add(kind: WarningKind, detail: string): void {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
    const warning: Warning = { kind, at: Date.now(), detail: detail.slice(0, 200) };
    if (this.ring.length < this.capacity) this.ring.push(warning);
    else this.ring[this.next] = warning;
    this.next = (this.next + 1) % this.capacity;
  }

  count(kind: WarningKind): number {
    return this.counts.get(kind) ?? 0;
  }

  /** Totals since start, by kind (every kind, zeros included). */
  totals(): Record<WarningKind, number> {
    const out = {} as Record<WarningKind, number>;
    for (const kind of WARNING_KINDS) out[kind] = this.count(kind);
    return out;
  }

  /** The kept warnings, newest first. */
  recent(): Warning[] {
    const ordered =
      this.ring.length < this.capacity ? this.ring : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
    return [...ordered].reverse();
  }
}
