// The backplane seam (ARCHITECTURE.md "Seams"). A broker carries envelopes
// between instances on named channels. The hub reference-counts local members
// and calls subscribe() for a channel's first member and unsubscribe() after
// its last; a broker applies those calls in the order they were made, so a join
// and a leave racing with a round trip end in the state of the last call.
//
// Appending to a room's history and publishing are one operation of the
// engine (append()), not a store publishing behind the broker's back: every
// publication passes through the broker, is counted by it, and an engine that
// offers history offers the same gap-free numbering.

import type { StreamPosition } from "crier-protocol";
import type { HistoryOptions } from "../history/history.js";
import { DEFAULT_PREFIX } from "../redis/connection.js";
import type { Envelope } from "./envelope.js";

/** Where append() keeps a publication: the room's history and how much of it to retain. */
export interface AppendOptions extends HistoryOptions {
  room: string;
}

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
export type ResubscribedListener = (channels: readonly string[]) => void;

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
  /**
   * The history capability: appends `envelope` to `options.room`'s history,
   * assigning the next offset (and the epoch), then publishes it with them on
   * `channel`, atomically: nothing can be published to the room in between.
   * Rejects like publish(). Absent on an engine that keeps no history: a
   * configuration that asks for history is then refused at start.
   */
  append?(channel: string, envelope: Envelope, options: AppendOptions): Promise<StreamPosition>;
  /** Whether the backplane is reachable now. */
  isReady(): boolean;
  /** Called on every change of readiness. */
  onReadyChange(listener: ReadyListener): void;
  /**
   * Called with channels whose subscription moved while the broker stayed
   * ready (Redis Cluster: to the master that owns their slot after
   * resharding): they may have missed messages in between. Optional.
   */
  onResubscribed?(listener: ResubscribedListener): void;
  /** Channels with a live subscription on this instance (for tests and metrics). */
  channelCount(): number;
  stats(): BrokerStats;
  /** Idempotent. */
  close(): Promise<void>;
}

/**
 * Channel names under a configurable prefix: one per room and one per user.
 * With `hashTags` (Redis Cluster) the room or user is the name's hash tag, as
 * in the room's history keys, so a room's channel lives on the shard that
 * keeps its history and the append+publish script stays on one shard.
 */
export class ChannelNames {
  readonly prefix: string;
  private readonly open: string;
  private readonly close: string;
  constructor(prefix: string = DEFAULT_PREFIX, hashTags = false) {
    this.prefix = prefix;
    [this.open, this.close] = hashTags ? ["{", "}"] : ["", ""];
  }
  room(room: string): string {
    return `${this.prefix}room:${this.open}${room}${this.close}`;
  }
  user(user: string): string {
    return `${this.prefix}user:${this.open}${user}${this.close}`;
  }
  /** A channel every instance subscribes to, for cluster-wide control (disconnect a client by id). */
  control(): string {
    return `${this.prefix}${this.open}control${this.close}`;
  }
  /** One instance's own channel, for requests to it and replies to its requests (cluster/control.ts). */
  node(id: string): string {
    return `${this.prefix}ask:${this.open}${id}${this.close}`;
  }
}
