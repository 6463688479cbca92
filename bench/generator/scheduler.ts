// Open-loop publishing at a fixed rate: every millisecond, the publications due
// since the rate was set go out, in turn over this thread's publishers and, for
// each publisher, over its targets. Publications are stamped with the time they
// are written, so a generator that falls behind shows in the publish rate, not
// as server latency.

import type { Outlet } from "./outlet.js";
import { nowMicros, type PayloadBuilder } from "./payload.js";
import type { PublisherSpec } from "./spec.js";

interface Publisher {
  out: Outlet;
  spec: PublisherSpec;
  next: number;
}

export class PublishScheduler {
  /** Publications written since the counters were reset. */
  sent = 0;
  /** Deliveries they must make. */
  expected = 0;
  /** Publications skipped because the thread fell more than a second behind. */
  skipped = 0;
  /** Publications due that could not go out (connection gone, too many HTTP requests pending). */
  unsent = 0;

  private readonly publishers: Publisher[];
  private readonly payload: PayloadBuilder;
  private rate = 0;
  private tag = "w";
  private startedAt = 0;
  private issued = 0;
  private cursor = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(publishers: { out: Outlet; spec: PublisherSpec }[], payload: PayloadBuilder) {
    this.publishers = publishers.map((p) => ({ ...p, next: 0 }));
    this.payload = payload;
  }

  /** Publishes at `rate` per second from now on (0 stops). */
  setRate(rate: number, tag: string): void {
    this.rate = this.publishers.length === 0 ? 0 : rate;
    this.tag = tag;
    this.startedAt = performance.now();
    this.issued = 0;
    clearInterval(this.timer);
    this.timer = this.rate > 0 ? setInterval(() => this.tick(), 1) : undefined;
  }

  /** Tags publications `tag` from now on and resets the counters, keeping the pace. */
  retag(tag: string): void {
    this.tag = tag;
    this.sent = 0;
    this.expected = 0;
    this.skipped = 0;
    this.unsent = 0;
  }

  stop(): void {
    this.setRate(0, this.tag);
  }

  private tick(): void {
    const due = Math.floor(((performance.now() - this.startedAt) * this.rate) / 1000) - this.issued;
    if (due <= 0) return;
    let count = due;
    if (count > this.rate) {
      // More than a second behind: catching up would be a burst no real client makes.
      this.skipped += count - this.rate;
      count = this.rate;
    }
    this.issued += due;
    const payload = this.payload.json(this.tag, nowMicros());
    for (let i = 0; i < count; i++) {
      const publisher = this.publishers[this.cursor] as Publisher;
      this.cursor = (this.cursor + 1) % this.publishers.length;
      const spec = publisher.spec;
      const target = spec.targets[publisher.next] ?? "";
      publisher.next = (publisher.next + 1) % spec.targets.length;
      if (publisher.out.publish(spec.kind, target, payload)) {
        this.sent++;
        this.expected += spec.fanout;
      } else {
        this.unsent++;
      }
    }
  }
}
