// Publishing from a backend without HTTP: straight into Redis, through the
// same room service (envelopes, and for rooms with history the engine's atomic
// offset assignment) as a crier instance, so every instance delivers it like
// its own.

import { randomBytes } from "node:crypto";
import { type JsonValue, ProtocolError } from "crier-protocol";
import { type Logger, pino } from "pino";
import type { z } from "zod";
import { RoomPolicy } from "./auth/policy.js";
import { ChannelNames } from "./broker/broker.js";
import { RedisBroker } from "./broker/redis.js";
import { type NamespaceConfig, namespaceSchema } from "./config/schema.js";
import { DEFAULT_PREFIX } from "./redis/connection.js";
import { isClusterUrl } from "./redis/url.js";
import { type PublishResult, RoomService } from "./service/room-service.js";

export interface PublisherOptions {
  /** The Redis URL the crier instances use (redis://, rediss://, redis+sentinel:// or redis+cluster://). */
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
  private readonly rooms: RoomService;

  private constructor(options: PublisherOptions) {
    const logger = options.logger ?? pino({ level: "warn" });
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    const policy = new RoomPolicy(parseNamespaces(options.namespaces ?? {}));
    this.broker = new RedisBroker({ url: options.redis, prefix, logger });
    this.rooms = new RoomService(
      this.broker,
      new ChannelNames(prefix, isClusterUrl(options.redis)),
      policy,
      options.id ?? `publisher-${randomBytes(3).toString("hex")}`,
    );
  }

  /** Connects to Redis; rejects naming the URL when it cannot. */
  static async connect(options: PublisherOptions): Promise<CrierPublisher> {
    const publisher = new CrierPublisher(options);
    await publisher.broker.start(() => {});
    return publisher;
  }

  /** Publishes `data` to `room` on every instance; rooms with history get an offset. */
  publish(room: string, data: JsonValue): Promise<PublishResult> {
    return this.rooms.publish(room, JSON.stringify(data));
  }

  /** Sends `data` to every connection of `user`, on every instance. */
  send(user: string, data: JsonValue): Promise<void> {
    return this.rooms.send(user, JSON.stringify(data));
  }

  /** Idempotent. */
  close(): Promise<void> {
    return this.broker.close();
  }
}

function parseNamespaces(input: Record<string, z.input<typeof namespaceSchema>>): Record<string, NamespaceConfig> {
  const namespaces: Record<string, NamespaceConfig> = {};
  for (const [name, value] of Object.entries(input)) {
    const parsed = namespaceSchema.safeParse(value);
    if (!parsed.success) {
      throw new ProtocolError(
        "bad_request",
        `namespaces.${name}: ${parsed.error.issues.map((i) => i.message).join("; ")}`,
      );
    }
    namespaces[name] = parsed.data;
  }
  return namespaces;
}
