// An SDK client that records what a user would observe: per room, every message
// with the offset and epoch it arrived under and every `subscribed` outcome
// (first and after each reconnect); per connection, every close code. Recovery
// tests compare these records with what the publishers were acknowledged.

import type { JsonValue } from "crier-protocol";
import { WebSocket } from "ws";
import {
  CrierClient,
  type SubscribedInfo,
  type Subscription,
  type WebSocketConstructor,
} from "../../packages/client/src/index.js";

export interface Received {
  /** Absent in rooms without history. */
  offset: number | undefined;
  /** The epoch of the `subscribed` reply the message followed (message frames carry none; the SDK keeps it). */
  epoch: string | undefined;
  data: JsonValue;
}

/** What one subscription of a RecordingSubscriber saw. */
export class RoomLog {
  readonly room: string;
  readonly subscription: Subscription;
  /** Messages of the room, in arrival order. */
  readonly received: Received[] = [];
  /** Every `subscribed` outcome, in order: the first one, then one per resubscribe. */
  readonly subscribed: SubscribedInfo[] = [];

  constructor(client: CrierClient, room: string) {
    this.room = room;
    this.subscription = client.subscribe(room, (message) => {
      // Read synchronously: the SDK sets the position before the replay that follows a reply.
      this.received.push({ offset: message.offset, epoch: this.subscription.position?.epoch, data: message.data });
    });
    this.subscription.on("error", () => {});
    this.subscription.on("resubscribed", (info) => this.subscribed.push(info));
    void this.subscription.ready.then(
      (info) => this.subscribed.unshift(info),
      () => {},
    );
  }

  /** The offset of the last message received (undefined before any). */
  lastOffset(): number | undefined {
    return this.received.at(-1)?.offset;
  }
}

export interface SubscriberOptions {
  /** The WebSocket implementation (default: `ws`'s). */
  WebSocket?: WebSocketConstructor;
  /** Reconnect backoff, short so tests are quick (defaults 50 and 500). */
  minReconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
}

/** An SDK client subscribed to `room` (and to more rooms with join()). */
export class RecordingSubscriber {
  readonly client: CrierClient;
  /** The close code of every lost connection, in order. */
  readonly closes: number[] = [];
  /** The first room's log. */
  readonly log: RoomLog;
  private readonly logs: RoomLog[] = [];

  constructor(url: string, room: string, options: SubscriberOptions = {}) {
    this.client = new CrierClient(url, {
      WebSocket: options.WebSocket ?? WebSocket,
      minReconnectDelayMs: options.minReconnectDelayMs ?? 50,
      maxReconnectDelayMs: options.maxReconnectDelayMs ?? 500,
    });
    this.client.on("disconnected", ({ code }) => this.closes.push(code));
    // Errors are seen through their effects (closes, resubscribes); a listener keeps them from being unhandled.
    this.client.on("error", () => {});
    this.log = this.join(room);
  }

  /** Subscribes to one more room on the same connection. */
  join(room: string): RoomLog {
    const log = new RoomLog(this.client, room);
    this.logs.push(log);
    return log;
  }

  get received(): Received[] {
    return this.log.received;
  }

  get subscribed(): SubscribedInfo[] {
    return this.log.subscribed;
  }

  get subscription(): Subscription {
    return this.log.subscription;
  }

  lastOffset(): number | undefined {
    return this.log.lastOffset();
  }

  /** Connects and resolves once every room's first `subscribed` reply came. */
  async start(): Promise<SubscribedInfo> {
    await this.client.connect();
    const [first] = await Promise.all(this.logs.map((log) => log.subscription.ready));
    if (first === undefined) throw new Error("no subscription");
    return first;
  }

  close(): void {
    this.client.close();
  }
}
