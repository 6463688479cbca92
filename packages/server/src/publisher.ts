// Publishing from a backend without HTTP: straight into Redis, with the same
// envelope (and, for rooms with history, the same atomic offset assignment) as
// a crier instance uses, so every instance delivers it like its own.

import { randomBytes } from "node:crypto";
import { isValidRoom, type JsonValue, ProtocolError } from "crier-protocol";
import { type Logger, pino } from "pino";
import type { z } from "zod";
import { RoomPolicy } from "./auth/policy.js";
import { ChannelNames } from "./broker/broker.js";
import type { Envelope } from "./broker/envelope.js";
import { RedisBroker } from "./broker/redis.js";
import { type NamespaceConfig, namespaceSchema } from "./config/schema.js";
import { RedisHistory } from "./history/redis.js";
import type { PublishResult } from "./session/host.js";

export interface PublisherOptions {
  /** The Redis URL the crier instances use (redis://, rediss:// or redis+sentinel://). */
  redis: string;
  /** The instances' `redisPrefix` (default "crier:"). */
  prefix?: string;
  /**
   * The instances' `namespaces` configuration: which rooms keep history (and
   * how much) decides how a publication gets its offset. Pass the same object.
   */
  namespaces?: Record<string, z.input<typeof namespaceSchema>>;
  /** Shown as the publishing node in envelopes (default "publisher-<random>"). */
  id?: string;
  logger?: Logger;
}

export class CrierPublisher {
  private readonly broker: RedisBroker;
  private readonly history: RedisHistory;
  private readonly names: ChannelNames;
  private readonly policy: RoomPolicy;
  private readonly id: string;

  private constructor(options: PublisherOptions) {
    const logger = options.logger ?? pino({ level: "warn" });
    const prefix = options.prefix ?? "crier:";
    const namespaces: Record<string, NamespaceConfig> = {};
    for (const [name, value] of Object.entries(options.namespaces ?? {})) {
      const parsed = namespaceSchema.safeParse(value);
      if (!parsed.success) {
        throw new ProtocolError(
          "bad_request",
          `namespaces.${name}: ${parsed.error.issues.map((i) => i.message).join("; ")}`,
        );
      }
      namespaces[name] = parsed.data;
    }
    this.policy = new RoomPolicy(namespaces);
    this.names = new ChannelNames(prefix);
    this.id = options.id ?? `publisher-${randomBytes(3).toString("hex")}`;
    this.broker = new RedisBroker({ url: options.redis, logger });
    this.history = new RedisHistory({ url: options.redis, prefix, logger });
  }

  /** Connects to Redis; rejects naming the URL when it cannot. */
  static async connect(options: PublisherOptions): Promise<CrierPublisher> {
    const publisher = new CrierPublisher(options);
    await publisher.broker.start(() => {});
    return publisher;
  }

  /** Publishes `data` to `room` on every instance; rooms with history get an offset. */
  async publish(room: string, data: JsonValue): Promise<PublishResult> {
    if (!isValidRoom(room)) throw new ProtocolError("bad_request", `invalid room name '${room}'`);
    const envelope: Envelope = { kind: "message", room, node: this.id, data: JSON.stringify(data) };
    const history = this.policy.options(room).history;
    if (history !== undefined) {
      const position = await this.history.publish(room, this.names.room(room), envelope, {
        size: history.size,
        ttlMs: history.ttl,
      });
      return { offset: position.offset, epoch: position.epoch };
    }
    await this.broker.publish(this.names.room(room), envelope);
    return {};
  }

  /** Sends `data` to every connection of `user`, on every instance. */
  async send(user: string, data: JsonValue): Promise<void> {
    if (user === "") throw new ProtocolError("bad_request", "user must not be empty");
    await this.broker.publish(this.names.user(user), {
      kind: "direct",
      user,
      node: this.id,
      data: JSON.stringify(data),
    });
  }

  /** Idempotent. */
  async close(): Promise<void> {
    await Promise.all([this.history.close(), this.broker.close()]);
  }
}
