// Publishing from a backend without HTTP: straight into the engine the crier
// instances use (Redis, or NATS), through the same room service (envelopes,
// and for rooms with history the engine's atomic offset assignment) as a
// crier instance, so every instance delivers it like its own.

import { randomBytes } from "node:crypto";
import { type JsonValue, ProtocolError } from "crier-protocol";
import { type Logger, pino } from "pino";
import type { z } from "zod";
import { RoomPolicy } from "./auth/policy.js";
import { type Broker, ChannelNames } from "./broker/broker.js";
import { NatsBroker } from "./broker/nats.js";
import { RedisBroker } from "./broker/redis.js";
import { type NamespaceConfig, namespaceSchema } from "./config/schema.js";
import { historyRetention, natsOptions } from "./nats/backends.js";
import { NatsLink } from "./nats/connection.js";
import { DEFAULT_PREFIX } from "./redis/connection.js";
import { isClusterUrl } from "./redis/url.js";
import { type PublishResult, RoomService } from "./service/room-service.js";

export interface PublisherOptions {
  /** The Redis URL the crier instances use (redis://, rediss://, redis+sentinel:// or redis+cluster://). */
  redis?: string;
  /**
   * The NATS URL the crier instances use (nats:// or tls://). When the
   * instances have both, give this one: live messages go over NATS.
   */
  nats?: string;
  /** The instances' `natsCreds`: a .creds file for NATS. */
  natsCreds?: string;
  /** The instances' `natsTls`: PEM files for TLS to NATS (the CA; a client certificate and key). */
  natsTls?: { ca?: string; cert?: string; key?: string };
  /** The instances' `redisPrefix` (default "crier:"), which scopes NATS subjects and streams too. */
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
  private readonly broker: Broker;
  private readonly rooms: RoomService;

  private constructor(options: PublisherOptions) {
    const logger = options.logger ?? pino({ level: "warn" });
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    const namespaces = parseNamespaces(options.namespaces ?? {});
    this.broker = publisherBroker(options, prefix, namespaces, logger);
    this.rooms = new RoomService(
      this.broker,
      new ChannelNames(
        prefix,
        options.nats === undefined && options.redis !== undefined && isClusterUrl(options.redis),
      ),
      new RoomPolicy(namespaces),
      options.id ?? `publisher-${randomBytes(3).toString("hex")}`,
    );
  }

  /** Connects to the engine; rejects naming the URL when it cannot. */
  static async connect(options: PublisherOptions): Promise<CrierPublisher> {
    const publisher = new CrierPublisher(options);
    try {
      await publisher.broker.start(() => {});
    } catch (err) {
      await publisher.close();
      throw err;
    }
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

/**
 * The engine's broker. On NATS it appends to the instances' history stream as
 * they do, but leaves the stream's retention to them (they know every
 * namespace); it only creates the stream if no instance has yet.
 */
function publisherBroker(
  options: PublisherOptions,
  prefix: string,
  namespaces: Record<string, NamespaceConfig>,
  logger: Logger,
): Broker {
  if (options.nats !== undefined) {
    const link = new NatsLink("publisher", natsOptions(options, options.nats, logger));
    return new NatsBroker({ link, prefix, ...historyRetention(namespaces), adopt: true });
  }
  if (options.redis !== undefined) return new RedisBroker({ url: options.redis, prefix, logger });
  throw new ProtocolError(
    "bad_request",
    "CrierPublisher: give `redis` or `nats`, the engine URL the crier instances use (their `redis` or `nats` setting)",
  );
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
