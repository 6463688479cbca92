// The embedded default broker: one process, no Redis. Delivery is asynchronous
// (a microtask later) like a real backplane, and in publish order.

import { ProtocolError } from "crier-protocol";
import { type Broker, type BrokerStats, type DeliveryHandler, emptyBrokerStats, type ReadyListener } from "./broker.js";
import type { Envelope } from "./envelope.js";

export class MemoryBroker implements Broker {
  private handler: DeliveryHandler | undefined;
  private readonly channels = new Set<string>();
  private closed = false;
  private readonly counts: BrokerStats = emptyBrokerStats();

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
    // Subscription is checked at delivery time, as a broker would: a channel
    // dropped before delivery receives nothing.
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
  }
}
