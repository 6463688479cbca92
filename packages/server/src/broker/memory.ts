// The embedded default broker: one process, no Redis. Delivery is asynchronous
// (a microtask later) like a real backplane, and in publish order. It keeps
// rooms' history in this process too (a MemoryHistory it owns).

import { ProtocolError, type StreamPosition } from "crier-protocol";
import { MemoryHistory, type MemoryHistoryOptions } from "../history/memory.js";
import {
  type AppendOptions,
  type Broker,
  type BrokerStats,
  type DeliveryHandler,
  emptyBrokerStats,
  type ReadyListener,
} from "./broker.js";
import type { Envelope } from "./envelope.js";

export interface MemoryBrokerOptions {
  /** Options of the history this broker appends to (a clock for tests, the sweep interval). */
  history?: MemoryHistoryOptions;
}

export class MemoryBroker implements Broker {
  /** The history append() writes to; the node reads rooms' history from it. */
  readonly history: MemoryHistory;
  private handler: DeliveryHandler | undefined;
  private readonly channels = new Set<string>();
  private closed = false;
  private readonly counts: BrokerStats = emptyBrokerStats();

  constructor(options: MemoryBrokerOptions = {}) {
    this.history = new MemoryHistory(options.history);
  }

  async start(handler: DeliveryHandler): Promise<void> {
    this.handler = handler;
  }

  async subscribe(channel: string): Promise<void> {
    this.channels.add(channel);
  }

  async unsubscribe(channel: string): Promise<void> {
    this.channels.delete(channel);
  }

  async publish(channel: string, envelope: Envelope): Promise<void> {
    if (this.closed) {
      this.counts.publishFailed++;
      throw new ProtocolError("unavailable", "the broker is closed");
    }
    this.counts.published++;
    this.deliverLater(channel, envelope);
  }

  /** Nothing awaits between the append and queueing the delivery, so offsets are in delivery order. */
  async append(channel: string, envelope: Envelope, options: AppendOptions): Promise<StreamPosition> {
    if (this.closed) {
      this.counts.publishFailed++;
      throw new ProtocolError("unavailable", "the broker is closed");
    }
    const { sent, position } = this.history.append(options.room, envelope, options);
    this.counts.published++;
    this.deliverLater(channel, sent);
    return position;
  }

  /**
   * Subscription is checked at delivery time, as a broker would: a channel
   * dropped before delivery receives nothing.
   */
  private deliverLater(channel: string, envelope: Envelope): void {
    queueMicrotask(() => {
      if (!this.channels.has(channel)) return;
      this.counts.received++;
      this.counts.delivered++;
      this.handler?.(channel, envelope);
    });
  }

  isReady(): boolean {
    return !this.closed;
  }

  onReadyChange(_listener: ReadyListener): void {
    // Memory is always reachable while open.
  }

  channelCount(): number {
    return this.channels.size;
  }

  stats(): BrokerStats {
    return { ...this.counts };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.channels.clear();
    await this.history.close();
  }
}
