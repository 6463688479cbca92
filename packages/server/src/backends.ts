// The backplane-facing parts, chosen by configuration: the embedded in-memory
// ones for a single instance, Redis-backed ones when `redis` is set, NATS
// ones when `nats` is (nats/backends.ts). History
// and presence stores exist only when some namespace uses them. An engine
// that cannot keep a promise the configuration asks for is refused here, at
// start, with an error that says what to configure instead.

import type { Logger } from "pino";
import { RoomPolicy } from "./auth/policy.js";
import { type Broker, ChannelNames } from "./broker/broker.js";
import { MemoryBroker } from "./broker/memory.js";
import { RedisBroker } from "./broker/redis.js";
import type { Membership } from "./cluster/membership.js";
import { MemoryMembership } from "./cluster/memory.js";
import { nodeKeyPrefix, RedisMembership } from "./cluster/redis.js";
import type { CrierConfig } from "./config/schema.js";
import type { HistoryStore } from "./history/history.js";
import { RedisHistory } from "./history/redis.js";
import { MemoryUserConnections, type UserConnections } from "./limits/user-connections.js";
import { RedisUserConnections } from "./limits/user-connections-redis.js";
import { natsBackends, natsUserConnections } from "./nats/backends.js";
import { MemoryPresence } from "./presence/memory.js";
import type { PresenceStore } from "./presence/presence.js";
import { RedisPresence } from "./presence/redis.js";
import { isClusterUrl } from "./redis/url.js";

export interface Backends {
  broker: Broker;
  membership: Membership;
  history: HistoryStore | undefined;
  presence: PresenceStore | undefined;
}

export function createBackends(config: CrierConfig, nodeId: string, logger: Logger, broker?: Broker): Backends {
  if (config.nats !== undefined) return natsBackends(config, config.nats, nodeId, logger, broker);
  const url = config.redis;
  const cluster = url !== undefined && isClusterUrl(url);
  // On Redis Cluster the presence scripts SPUBLISH leaves and joins on the room's shard channel.
  const names = new ChannelNames(config.redisPrefix, cluster);
  const policy = new RoomPolicy(config.namespaces);
  const prefix = config.redisPrefix;
  const namespaces = Object.values(config.namespaces);
  const keepsHistory = namespaces.some((options) => options.history !== undefined);
  // Members of join/leave rooms are stored too: the survivors of a crash announce their leaves from the store.
  const keepsPresence = namespaces.some((options) => options.presence || options.joinLeave);
  const chosenBroker = broker ?? (url === undefined ? new MemoryBroker() : new RedisBroker({ url, prefix, logger }));
  if (keepsHistory && chosenBroker.append === undefined) {
    throw new Error(
      "a namespace keeps history, but the broker cannot append to it (it has no append()): " +
        "use the memory or Redis engine, or remove `history` from the namespaces",
    );
  }
  if (url === undefined) {
    const history = chosenBroker instanceof MemoryBroker ? chosenBroker.history : undefined;
    if (keepsHistory && history === undefined) {
      throw new Error(
        "a namespace keeps history, but a custom broker without `redis` has no history store to read it back: " +
          "set `redis`, or pass a MemoryBroker",
      );
    }
    return {
      broker: chosenBroker,
      membership: new MemoryMembership(),
      history: keepsHistory ? history : undefined,
      presence: keepsPresence ? new MemoryPresence() : undefined,
    };
  }
  return {
    broker: chosenBroker,
    membership: new RedisMembership({
      url,
      prefix,
      heartbeatMs: config.cluster.heartbeatMs,
      nodeTimeoutMs: config.cluster.nodeTimeoutMs,
      logger,
    }),
    history: keepsHistory ? new RedisHistory({ url, prefix, logger }) : undefined,
    presence: keepsPresence
      ? new RedisPresence({
          url,
          prefix,
          nodeKeyPrefix: nodeKeyPrefix(prefix, cluster),
          nodeId,
          channel: (room) => names.room(room),
          announces: (room) => policy.options(room).joinLeave,
          sweepMs: config.cluster.heartbeatMs,
          logger,
        })
      : undefined,
  };
}

/** Per-user connection counts: this instance's own without a backplane, the cluster's in Redis (one, Sentinel or Cluster) or NATS. */
export function createUserConnections(config: CrierConfig, nodeId: string, logger: Logger): UserConnections {
  // NATS alone: in JetStream KV, beside membership. With `redis` too, in Redis as presence is.
  if (config.nats !== undefined && config.redis === undefined) {
    return natsUserConnections(config, config.nats, nodeId, logger);
  }
  if (config.redis === undefined) return new MemoryUserConnections();
  return new RedisUserConnections({
    url: config.redis,
    prefix: config.redisPrefix,
    nodeId,
    nodeKeyPrefix: nodeKeyPrefix(config.redisPrefix, isClusterUrl(config.redis)),
    logger,
  });
}
