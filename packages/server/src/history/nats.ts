// History in JetStream, shared by every instance (history/nats-log.ts): the
// NatsBroker appends, this store reads, walking back from the room's head.

import { ChannelNames } from "../broker/broker.js";
import type { Envelope } from "../broker/envelope.js";
import type { NatsLink } from "../nats/connection.js";
import { natsNames } from "../nats/connection.js";
import { DEFAULT_PREFIX } from "../redis/connection.js";
import type { HistoryRead, HistoryStore, ReadOptions } from "./history.js";
import { positionOf, RoomLog, type RoomLogOptions } from "./nats-log.js";

/** Reads of at most this many messages walk back from the head, one get each; longer ones search and fetch. */
const WALK_AT_MOST = 16;

export interface NatsHistoryOptions extends Partial<RoomLogOptions> {
  link: NatsLink;
  /** Prefix of channel names (`redisPrefix`, default "crier:"), as the broker's. */
  prefix?: string;
  /** How the node names room channels (default: under `prefix`, no hash tags): a room's history goes out on its channel. */
  channels?: ChannelNames;
}

export class NatsHistory implements HistoryStore {
  private readonly link: NatsLink;
  private readonly channels: ChannelNames;
  private readonly log: RoomLog;

  constructor(options: NatsHistoryOptions) {
    this.link = options.link;
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    this.channels = options.channels ?? new ChannelNames(prefix);
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
      // A few messages: walk back from the head; more: search for the first and fetch the run.
      const after = since?.offset ?? 0;
      const wanted = since === undefined ? Math.min(limit, head.size, head.offset) : head.offset - since.offset;
      let read: { messages: Envelope[]; oldest: number };
      if (wanted <= WALK_AT_MOST) {
        read = await this.log.walkBack(jsm, head, after, options.ttlMs, since === undefined ? limit : wanted);
      } else {
        const from = since === undefined ? head.offset - wanted + 1 : since.offset + 1;
        read = await this.log.readForward(jsm, js, channel, head, from, Math.min(limit, wanted), options.ttlMs);
      }
      const messages = since === undefined ? read.messages : read.messages.slice(0, limit);
      const complete = since === undefined || since.offset + 1 >= read.oldest;
      return { position, messages, complete };
    } catch (err) {
      throw this.link.failure(`read of ${room}`, err);
    }
  }

  close(): Promise<void> {
    return this.link.close();
  }
}
