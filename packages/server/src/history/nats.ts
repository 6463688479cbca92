// History in JetStream, shared by every instance (history/nats-log.ts): the
// NatsBroker appends, this store reads, walking back from the room's head.

import { ChannelNames } from "../broker/broker.js";
import type { Envelope } from "../broker/envelope.js";
import type { NatsLink } from "../nats/connection.js";
import { natsNames } from "../nats/connection.js";
import { DEFAULT_PREFIX } from "../redis/connection.js";
import type { HistoryRead, HistoryStore, ReadOptions } from "./history.js";
import { positionOf, RoomLog, type RoomLogOptions } from "./nats-log.js";

export interface NatsHistoryOptions extends Partial<RoomLogOptions> {
  link: NatsLink;
  /** Prefix of channel names (`redisPrefix`, default "crier:"), as the broker's. */
  prefix?: string;
}

export class NatsHistory implements HistoryStore {
  private readonly link: NatsLink;
  private readonly channels: ChannelNames;
  private readonly log: RoomLog;

  constructor(options: NatsHistoryOptions) {
    this.link = options.link;
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    this.channels = new ChannelNames(prefix);
    this.log = new RoomLog(this.link, natsNames(prefix), {
      maxSize: options.maxSize ?? 1000,
      maxTtlMs: options.maxTtlMs ?? 0,
    });
  }

  async start(timeoutMs = 5000): Promise<void> {
    await this.link.start(timeoutMs);
  }

  isReady(): boolean {
    return this.link.isReady();
  }

  async read(room: string, options: ReadOptions & { ttlMs: number }): Promise<HistoryRead> {
    const { since } = options;
    const limit = options.limit === undefined ? Number.POSITIVE_INFINITY : Math.max(0, options.limit);
    try {
      const { manager: jsm, client: js } = await this.link.jetstream();
      const channel = this.channels.room(room);
      const head = await this.log.head(jsm, js, channel);
      const position = positionOf(head);
      if (since !== undefined && (since.epoch !== head.epoch || since.offset > head.offset)) {
        return { position, messages: [], complete: false };
      }
      if (since !== undefined && since.offset === head.offset) return { position, messages: [], complete: true };
      // Walking back from the head: without `since` the latest `limit`; with it, back to since + 1.
      const after = since?.offset ?? 0;
      const walk = await this.log.walkBack(
        jsm,
        head,
        after,
        options.ttlMs,
        since === undefined ? limit : Number.POSITIVE_INFINITY,
      );
      const messages: Envelope[] = since === undefined ? walk.messages : walk.messages.slice(0, limit);
      const complete = since === undefined || since.offset + 1 >= walk.oldest;
      return { position, messages, complete };
    } catch (err) {
      throw this.link.failure(`read of ${room}`, err);
    }
  }

  close(): Promise<void> {
    return this.link.close();
  }
}
