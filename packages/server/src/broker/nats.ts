// The NATS backplane: every channel (room, user, control) is a core subject;
// publish() is a core publish confirmed by a round trip. append() stores the
// message in the rooms' JetStream stream, which republishes it to the room's
// subject once stored (history/nats-log.ts), so offsets are assigned in the
// order every instance receives them, as with Redis's append+publish script.
// The client restores subscriptions on reconnect; while disconnected the
// broker is not ready and publishes are refused with `unavailable`.

import { ProtocolError, type StreamPosition } from "crier-protocol";
import type { Msg, NatsConnection, Subscription } from "nats";
import { messageOf } from "../describe-error.js";
import { type RoomHead, RoomLog, type RoomLogOptions } from "../history/nats-log.js";
import { KeyedQueue } from "../keyed-queue.js";
import { type JetStream, type NatsLink, type NatsNames, natsNames } from "../nats/connection.js";
import { DEFAULT_PREFIX } from "../redis/connection.js";
import {
  type AppendOptions,
  type Broker,
  type BrokerStats,
  ChannelNames,
  type DeliveryHandler,
  emptyBrokerStats,
  type ReadyListener,
} from "./broker.js";
import { decodeEnvelope, type Envelope, encodeEnvelope } from "./envelope.js";

export interface NatsBrokerOptions extends Partial<RoomLogOptions> {
  link: NatsLink;
  /** Prefix of channel names (`redisPrefix`, default "crier:"); scopes subjects and the stream. */
  prefix?: string;
  /** How the node names room channels (default: under `prefix`, no hash tags): a room's history goes out on its channel. */
  channels?: ChannelNames;
  /** start() rejects if NATS is not reachable within this long (default 5000). */
  startTimeoutMs?: number;
}

/** Heads of recently appended rooms kept, so an uncontended append needs one round trip. */
const HEADS_KEPT = 10_000;
/** Appends refused because others appended first, before giving up with `unavailable`. */
const MAX_ATTEMPTS = 50;

export class NatsBroker implements Broker {
  private readonly link: NatsLink;
  private readonly names: NatsNames;
  private readonly channels: ChannelNames;
  private readonly log: RoomLog;
  private readonly startTimeoutMs: number;
  private handler: DeliveryHandler | undefined;
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly counters: BrokerStats = emptyBrokerStats();
  private readonly heads = new Map<string, RoomHead>();
  /** Per room, the tail of this instance's appends: one at a time, so they do not contend with each other. */
  private readonly appending = new KeyedQueue();
  private js: JetStream | undefined;
  private started = false;
  private closed = false;
  private wasDown = false;
  /** JetStream answered on the current connection (the stream is there): appends and reads can work. */
  private streamReady = false;
  private readonly readyListeners: ReadyListener[] = [];
  private lastReady = false;

  constructor(options: NatsBrokerOptions) {
    this.link = options.link;
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    this.names = natsNames(prefix);
    this.channels = options.channels ?? new ChannelNames(prefix);
    this.log = new RoomLog(this.link, this.names, {
      maxSize: options.maxSize ?? 1000,
      maxTtlMs: options.maxTtlMs ?? 0,
      adopt: options.adopt ?? false,
    });
    this.startTimeoutMs = options.startTimeoutMs ?? 5000;
    this.link.onChange((up) => {
      if (!up) {
        this.wasDown = true;
        this.streamReady = false;
        this.notify();
      } else if (this.wasDown) {
        this.wasDown = false;
        void this.afterReconnect();
      }
    });
  }

  async start(handler: DeliveryHandler): Promise<void> {
    if (this.started) throw new Error("nats broker: start() called twice");
    if (this.closed) throw new Error("nats broker: start() after close()");
    this.started = true;
    this.handler = handler;
    await this.link.start(this.startTimeoutMs);
    try {
      const js = await this.link.jetstream();
      await this.log.ensureStream(js.manager);
      this.js = js;
      this.streamReady = true;
      this.notify();
    } catch (err) {
      await this.close();
      throw new Error(
        `nats broker: JetStream at ${this.link.url} (the \`nats\` setting) is not usable: ${messageOf(err)}; ` +
          "run nats-server with JetStream enabled (-js)",
      );
    }
    this.link.log.info("nats backplane ready");
  }

  /** A core subscription; resolved once the server has it (a round trip), so publications after it arrive. */
  async subscribe(channel: string): Promise<void> {
    const conn = this.connection();
    if (!this.subscriptions.has(channel)) {
      const subscription = conn.subscribe(this.names.live(channel), {
        callback: (err, msg) => {
          if (err === null) this.onMessage(channel, msg);
        },
      });
      this.subscriptions.set(channel, subscription);
    }
    await this.roundTrip(conn, `subscribe ${channel}`);
  }

  async unsubscribe(channel: string): Promise<void> {
    const subscription = this.subscriptions.get(channel);
    this.subscriptions.delete(channel);
    if (subscription === undefined || this.closed) return;
    subscription.unsubscribe();
  }

  async publish(channel: string, envelope: Envelope): Promise<void> {
    try {
      const conn = this.link.live();
      conn.publish(this.names.live(channel), encodeEnvelope(envelope));
      await this.roundTrip(conn, `publish to ${channel}`);
      this.counters.published++;
    } catch (err) {
      this.counters.publishFailed++;
      throw this.link.failure(`publish to ${channel}`, err);
    }
  }

  /**
   * Appends through the room's stream (see history/nats-log.ts); another
   * instance appending first only costs a reread of the head and a retry.
   */
  append(channel: string, envelope: Envelope, options: AppendOptions): Promise<StreamPosition> {
    return this.appending.run(options.room, () => this.appendNow(channel, envelope, options));
  }

  private async appendNow(channel: string, envelope: Envelope, options: AppendOptions): Promise<StreamPosition> {
    const { room } = options;
    const what = `publish to ${room}`;
    try {
      this.link.live();
      const js = this.js;
      if (js === undefined || !this.streamReady) {
        throw new ProtocolError("unavailable", `JetStream at ${this.link.url} is not ready`);
      }
      if (channel !== this.channels.room(room)) {
        throw new ProtocolError(
          "internal",
          `nats broker: ${room}'s history is published on ${this.channels.room(room)}`,
        );
      }
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const head = this.heads.get(room) ?? (await this.log.head(js.manager, js.client, channel));
        const appended = await this.log.append(js.client, channel, head, envelope, options.size);
        if (appended === undefined) {
          this.heads.delete(room);
          continue;
        }
        this.remember(room, appended);
        if (head.seq === 0) {
          this.log.dropEpochMarker(js.manager, channel).catch((err: unknown) => {
            this.link.log.warn({ err: messageOf(err), room }, "could not drop an epoch marker; it expires");
          });
        }
        this.counters.published++;
        return { offset: appended.offset, epoch: appended.epoch };
      }
      throw new ProtocolError("unavailable", `${what}: ${MAX_ATTEMPTS} attempts lost to concurrent publishers`);
    } catch (err) {
      this.heads.delete(room);
      this.counters.publishFailed++;
      throw this.link.failure(what, err);
    }
  }

  /**
   * Ready again only once JetStream answers on the new connection: a
   * nats-server accepts clients before it has recovered its streams, and a
   * NATS restarted without its store has no stream until it is made again.
   * Until then the hub must not resync rooms from history.
   */
  private async afterReconnect(): Promise<void> {
    const js = this.js;
    if (js === undefined) return;
    // A NATS restarted from a store that lost its newest messages must not number them again in the same epoch.
    const known = [...this.heads];
    this.heads.clear();
    for (let attempt = 0; this.link.isReady() && !this.closed; attempt++) {
      try {
        await this.log.ensureStream(js.manager);
        await this.dropRolledBack(known);
        this.streamReady = true;
        this.counters.recoveries++;
        this.notify();
        return;
      } catch (err) {
        if (attempt === 0)
          this.link.log.warn({ err: messageOf(err) }, "JetStream not usable yet after reconnecting; retrying");
        await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 100 * 2 ** attempt)).unref());
      }
    }
  }

  /**
   * A nats-server killed before its store was flushed comes back without its
   * newest messages. Offsets after the stored head would then be assigned
   * again to other messages in the same epoch, and a client holding one of
   * the lost offsets would "recover" past the reused ones. So a room whose
   * stored head is behind what this instance appended is purged: the next
   * read or append starts a new epoch, and subscribers are told recovered: false.
   */
  private async dropRolledBack(known: Array<[string, RoomHead]>): Promise<void> {
    const js = this.js;
    if (js === undefined || known.length === 0) return;
    for (const [room, head] of known) {
      const channel = this.channels.room(room);
      // Sequences are reused after a rollback too: compare the message itself.
      if (await this.log.holds(js.manager, channel, head)) continue;
      this.link.log.warn(
        { room, appended: head.offset },
        "history came back behind what was appended (nats-server lost unflushed messages): starting a new epoch",
      );
      await this.log.purge(js.manager, channel);
    }
  }

  isReady(): boolean {
    return this.started && !this.closed && this.streamReady && this.link.isReady();
  }

  onReadyChange(listener: ReadyListener): void {
    this.readyListeners.push(listener);
  }

  private notify(): void {
    const ready = this.isReady();
    if (ready === this.lastReady) return;
    this.lastReady = ready;
    for (const listener of [...this.readyListeners]) {
      try {
        listener(ready);
      } catch (err) {
        this.link.log.error({ err }, "ready listener threw");
      }
    }
  }

  channelCount(): number {
    return this.subscriptions.size;
  }

  stats(): BrokerStats {
    return { ...this.counters };
  }

  async close(): Promise<void> {
    if (this.closed) return this.link.close();
    this.closed = true;
    this.notify();
    this.subscriptions.clear();
    this.heads.clear();
    await this.link.close();
    this.handler = undefined;
  }

  private connection(): NatsConnection {
    const conn = this.link.current();
    if (conn === undefined || this.closed) throw new ProtocolError("unavailable", "the broker is closed");
    return conn;
  }

  private remember(room: string, head: RoomHead): void {
    this.heads.delete(room);
    this.heads.set(room, head);
    if (this.heads.size > HEADS_KEPT) {
      const oldest = this.heads.keys().next();
      if (oldest.done !== true) this.heads.delete(oldest.value);
    }
  }

  /** A PING/PONG: everything sent before it has reached the server. Bounded, and refused while down. */
  private async roundTrip(conn: NatsConnection, what: string): Promise<void> {
    if (!this.link.isReady()) {
      throw new ProtocolError("unavailable", `NATS at ${this.link.url} is unreachable; ${what} resumes on reconnect`);
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.link.timeoutMs} ms`)), this.link.timeoutMs);
    });
    try {
      await Promise.race([conn.flush(), timeout]);
    } catch (err) {
      throw this.link.failure(what, err);
    } finally {
      clearTimeout(timer);
    }
  }

  private onMessage(channel: string, msg: Msg): void {
    this.counters.received++;
    if (!this.subscriptions.has(channel)) return;
    const handler = this.handler;
    if (handler === undefined) return;
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(msg.string());
    } catch (err) {
      this.counters.malformed++;
      this.link.log.warn(
        { channel, bytes: msg.data.length, err: messageOf(err) },
        "dropped a message that is not an envelope",
      );
      return;
    }
    this.counters.delivered++;
    try {
      handler(channel, envelope);
    } catch (err) {
      this.link.log.error({ err, channel }, "delivery handler threw");
    }
  }
}
