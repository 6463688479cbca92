// Counts what a worker's connections receive and records latencies in an HDR
// histogram. One recorder serves every connection of a thread; recording is a
// few increments and one histogram update, no allocation.

import { build, encodeIntoCompressedBase64, type Histogram } from "hdr-histogram-js";
import type { PayloadSink } from "./raw-ws.js";

/** Latencies are recorded in µs, up to two minutes (longer ones are clamped). */
export const MAX_LATENCY_US = 120_000_000;

export function newHistogram(): Histogram {
  return build({
    bitBucketSize: 32,
    autoResize: false,
    lowestDiscernibleValue: 1,
    highestTrackableValue: MAX_LATENCY_US,
    numberOfSignificantValueDigits: 3,
  });
}

export class DeliveryRecorder implements PayloadSink {
  /** Payloads of any tag received while the window is open. */
  windowDeliveries = 0;
  /** Payloads of the window's tag received since it opened. */
  delivered = 0;
  private tag = -1;
  private open = false;
  private readonly histogram = newHistogram();

  /** Opens a window counting payloads tagged `tag` (one ASCII character). */
  begin(tag: string): void {
    this.tag = tag.charCodeAt(0);
    this.open = true;
    this.windowDeliveries = 0;
    this.delivered = 0;
    this.histogram.reset();
  }

  /** Closes the window; payloads of its tag still count (they are draining). */
  end(): void {
    this.open = false;
  }

  payload(tag: number, sentAt: number, now: number): void {
    if (this.open) this.windowDeliveries++;
    if (tag !== this.tag) return;
    this.delivered++;
    const latency = now - sentAt;
    this.histogram.recordValue(latency < 1 ? 1 : Math.min(latency, MAX_LATENCY_US));
  }

  encodedHistogram(): string {
    return encodeIntoCompressedBase64(this.histogram);
  }
}
