// Per-second samples of an instance's activity for the console's live charts:
// a ring of the last few minutes, filled by one unref'd timer that reads
// running totals the parts already keep. Nothing on the hot path changes but
// one timing per publish, so an instance nobody watches pays a few counter
// reads a second (docs/benchmarks.md, "The console's cost when idle").

/** Running totals the sampler turns into rates. */
export interface Totals {
  connections: number;
  /** Room publications fanned out to local members. */
  messagesOut: number;
  /** Messages (room and direct) written to local connections. */
  deliveries: number;
  ready: boolean;
  /** Times the backplane came back after an outage. */
  reconnects: number;
  slowConsumers: number;
  rateLimited: number;
}

/** One second of one instance. Rates are per second over the sample's interval. */
export interface Sample {
  /** Epoch milliseconds at the end of the interval. */
  t: number;
  connections: number;
  /** Publications this instance accepted (from its clients and its HTTP API) per second. */
  messagesIn: number;
  messagesOut: number;
  deliveries: number;
  /** Mean and slowest publish round trip (history append + backplane publish) in ms; null without publishes. */
  latencyMs: number | null;
  latencyMaxMs: number | null;
  /** 1 while the backplane is reachable. */
  ready: 0 | 1;
  reconnects: number;
  slowConsumers: number;
  rateLimited: number;
}

export interface SamplerOptions {
  intervalMs: number;
  /** Samples kept (the charts' window is capacity x interval). */
  capacity: number;
  /** Called after each sample, e.g. to advance the hub's per-room rate window. */
  onTick?: () => void;
}

export class StatsSampler {
  private readonly read: () => Totals;
  private readonly options: SamplerOptions;
  private readonly ring: Sample[] = [];
  private next = 0;
  private last: { at: number; totals: Totals } | undefined;
  private publishes = 0;
  private latencySum = 0;
  private latencyMax = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(read: () => Totals, options: SamplerOptions) {
    this.read = read;
    this.options = options;
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.last = { at: Date.now(), totals: this.read() };
    this.timer = setInterval(() => this.sample(), this.options.intervalMs);
    this.timer.unref();
  }

  /** A publication this instance accepted, and how long its round trip took. */
  published(ms: number): void {
    this.publishes++;
    this.latencySum += ms;
    if (ms > this.latencyMax) this.latencyMax = ms;
  }

  /** Samples taken after `since` (epoch ms), oldest first. */
  samples(since = 0): Sample[] {
    const ordered =
      this.ring.length < this.options.capacity
        ? this.ring
        : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
    return ordered.filter((sample) => sample.t > since);
  }

  /** Takes a sample now (the timer calls this; tests may too). */
  sample(): void {
    const at = Date.now();
    const totals = this.read();
    const last = this.last ?? { at: at - this.options.intervalMs, totals };
    const seconds = Math.max(at - last.at, 1) / 1000;
    const rate = (now: number, before: number): number => Math.max(now - before, 0) / seconds;
    const round = (value: number): number => Math.round(value * 100) / 100;
    const sample: Sample = {
      t: at,
      connections: totals.connections,
      messagesIn: round(this.publishes / seconds),
      messagesOut: round(rate(totals.messagesOut, last.totals.messagesOut)),
      deliveries: round(rate(totals.deliveries, last.totals.deliveries)),
      latencyMs: this.publishes === 0 ? null : round(this.latencySum / this.publishes),
      latencyMaxMs: this.publishes === 0 ? null : round(this.latencyMax),
      ready: totals.ready ? 1 : 0,
      reconnects: totals.reconnects - last.totals.reconnects,
      slowConsumers: totals.slowConsumers - last.totals.slowConsumers,
      rateLimited: totals.rateLimited - last.totals.rateLimited,
    };
    this.publishes = 0;
    this.latencySum = 0;
    this.latencyMax = 0;
    this.last = { at, totals };
    if (this.ring.length < this.options.capacity) this.ring.push(sample);
    else this.ring[this.next] = sample;
    this.next = (this.next + 1) % this.options.capacity;
    this.options.onTick?.();
  }

  /** Idempotent. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
