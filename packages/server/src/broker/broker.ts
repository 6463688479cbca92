// The backplane seam (DESIGN.md "The backplane contract"). A broker carries
// envelopes between instances on named channels. The hub reference-counts local
// members and calls subscribe() for a channel's first member and unsubscribe()
// after its last; a broker applies those calls in the order they were made, so a
// join and a leave racing with a round trip end in the state of the last call.

import type { Envelope } from "./envelope.js";

/** Running totals, for metrics and tests. */
export interface BrokerStats {
  /** Envelopes the backplane acknowledged. */
  published: number;
  /** Publishes refused (backplane down, timed out, connection lost). */
  publishFailed: number;
  /** Messages that came off the backplane, before any filtering. */
  received: number;
  /** Envelopes handed to the delivery handler. */
  delivered: number;
  /** Messages dropped because they were not envelopes. */
  malformed: number;
  /** Times the backplane became reachable again after an outage. */
  recoveries: number;
}

/** Every counter at zero, for a broker that has just started. */
export function emptyBrokerStats(): BrokerStats {
  return { published: 0, publishFailed: 0, received: 0, delivered: 0, malformed: 0, recoveries: 0 };
}

export type DeliveryHandler = (channel: string, envelope: Envelope) => void;
export type ReadyListener = (ready: boolean) => void;

export interface Broker {
  /** Connects. Resolves once publications can flow (or rejects naming why not). */
  start(handler: DeliveryHandler): Promise<void>;
  /** Starts delivering `channel`'s envelopes to the handler; resolves once the subscription is live. */
  subscribe(channel: string): Promise<void>;
  /** Stops delivering `channel`. */
  unsubscribe(channel: string): Promise<void>;
  /**
   * Publishes to every instance subscribed to `channel`, this one included.
   * Rejects with ProtocolError("unavailable") when the backplane is unreachable:
   * never a false success.
   */
  publish(channel: string, envelope: Envelope): Promise<void>;
  /** Whether the backplane is reachable now. */
  isReady(): boolean;
  /** Called on every change of readiness. */
  onReadyChange(listener: ReadyListener): void;
  /** Channels with a live subscription on this instance (for tests and metrics). */
  channelCount(): number;
  stats(): BrokerStats;
  /** Idempotent. */
  close(): Promise<void>;
}

/** Channel names under a configurable prefix: one per room and one per user. */
export class ChannelNames {
  readonly prefix: string;
  constructor(prefix: string) {
    this.prefix = prefix;
  }
  room(room: string): string {
    return `${this.prefix}room:${room}`;
  }
  user(user: string): string {
    return `${this.prefix}user:${user}`;
  }
  /** A channel every instance subscribes to, for cluster-wide control (disconnect a client by id). */
  control(): string {
    return `${this.prefix}control`;
  }
  /** One instance's own channel, for requests to it and replies to its requests (cluster/control.ts). */
  node(id: string): string {
    return `${this.prefix}ask:${id}`;
  }
}
