// The embedded default broker: one process, no Redis. Delivery is asynchronous
// (a microtask later) like a real backplane, and in publish order.

import { ProtocolError } from "crier-protocol";
import type { Broker, DeliveryHandler, ReadyListener } from "./broker.js";
import type { Envelope } from "./envelope.js";

export class MemoryBroker implements Broker {
  private handler: DeliveryHandler | undefined;
  private readonly channels = new Set<string>();
  private closed = false;

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
    if (this.closed) throw new ProtocolError("unavailable", "the broker is closed");
    // Subscription is checked at delivery time, as a broker would: a channel
    // dropped before delivery receives nothing.
    queueMicrotask(() => {
      if (this.channels.has(channel)) this.handler?.(channel, envelope);
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

  async close(): Promise<void> {
    this.closed = true;
    this.channels.clear();
  }
}
