// The parts of the NATS engine, chosen when `nats` is set: live messages on
// core NATS; history, presence and membership in JetStream, or presence and
// membership in Redis when `redis` is set too. History reads share the
// broker's connection; presence and membership have their own.

import type { Logger } from "pino";
import { RoomPolicy } from "../auth/policy.js";
import type { Backends } from "../backends.js";
import { type Broker, ChannelNames } from "../broker/broker.js";
import { NatsBroker } from "../broker/nats.js";
import { NatsMembership } from "../cluster/nats.js";
import { nodeKeyPrefix, RedisMembership } from "../cluster/redis.js";
import type { CrierConfig, NamespaceConfig } from "../config/schema.js";
import { NatsHistory } from "../history/nats.js";
import type { RoomLogOptions } from "../history/nats-log.js";
import type { UserConnections } from "../limits/user-connections.js";
import { NatsUserConnections } from "../limits/user-connections-nats.js";
import { NatsPresence } from "../presence/nats.js";
import { RedisPresence } from "../presence/redis.js";
import { isClusterUrl } from "../redis/url.js";
import { NatsLink, type NatsOptions } from "./connection.js";

export function natsBackends(
  config: CrierConfig,
  nats: string,
  nodeId: string,
  logger: Logger,
  broker?: Broker,
): Backends {
  const namespaces = Object.values(config.namespaces);
  const histories = namespaces.flatMap((options) => (options.history === undefined ? [] : [options.history]));
  // Members of join/leave rooms are stored too: the survivors of a crash announce their leaves from the store.
  const keepsPresence = namespaces.some((options) => options.presence || options.joinLeave);
  const prefix = config.redisPrefix;
  const redis = config.redis;
  if (redis !== undefined && histories.length > 0) {
    throw new Error(
      "nats and redis are both set and a namespace keeps history: its offsets would be numbered in Redis " +
        "but reach subscribers over NATS, where two instances' messages can overtake each other, so one order " +
        "per room and contiguous offsets could not hold. Remove redis (NATS with JetStream keeps history, " +
        "presence and membership itself), or remove nats (Redis then carries live messages too)",
    );
  }
  const options = natsOptions(config, nats, logger);
  const link = (component: string): NatsLink => new NatsLink(component, options);
  const retention = historyRetention(config.namespaces);
  const { heartbeatMs, nodeTimeoutMs } = config.cluster;
  const names = new ChannelNames(prefix);
  const policy = new RoomPolicy(config.namespaces);
  // The history reads on the broker's connection: when the broker is ready again after an
  // outage (and the hub resyncs rooms from history) the reads can go out at once.
  const brokerLink = link("broker");
  const chosenBroker = broker ?? new NatsBroker({ link: brokerLink, prefix, ...retention });
  const history =
    histories.length > 0
      ? new NatsHistory({ link: broker === undefined ? brokerLink : link("history"), prefix, ...retention })
      : undefined;
  if (redis !== undefined) {
    return {
      broker: chosenBroker,
      membership: new RedisMembership({ url: redis, prefix, heartbeatMs, nodeTimeoutMs, logger }),
      history,
      presence: keepsPresence
        ? new RedisPresence({ url: redis, prefix, nodeKeyPrefix: nodeKeyPrefix(prefix, isClusterUrl(redis)), logger })
        : undefined,
    };
  }
  return {
    broker: chosenBroker,
    membership: new NatsMembership({ link: link("membership"), prefix, heartbeatMs, nodeTimeoutMs }),
    history,
    presence: keepsPresence
      ? new NatsPresence({
          link: link("presence"),
          prefix,
          nodeTimeoutMs,
          nodeId,
          channel: (room) => names.room(room),
          announces: (room) => policy.options(room).joinLeave,
          sweepMs: heartbeatMs,
        })
      : undefined,
  };
}

/** Per-user connection counts in JetStream KV, cluster-wide, for NATS without `redis`. */
export function natsUserConnections(
  config: CrierConfig,
  nats: string,
  nodeId: string,
  logger: Logger,
): UserConnections {
  return new NatsUserConnections({
    link: new NatsLink("user-connections", natsOptions(config, nats, logger)),
    nodeId,
    prefix: config.redisPrefix,
    nodeTimeoutMs: config.cluster.nodeTimeoutMs,
  });
}

/**
 * What the history stream keeps: the most messages and the longest ttl of
 * the namespaces, each read applying its own namespace's (history/nats-log.ts).
 */
export function historyRetention(namespaces: Record<string, NamespaceConfig>): RoomLogOptions {
  const histories = Object.values(namespaces).flatMap((options) =>
    options.history === undefined ? [] : [options.history],
  );
  return {
    maxSize: Math.max(1, ...histories.map((history) => history.size)),
    maxTtlMs: Math.max(0, ...histories.map((history) => history.ttlMs)),
  };
}

/** How every NATS part connects: the URL, credentials and TLS of the configuration. */
export function natsOptions(
  config: Pick<CrierConfig, "natsCreds" | "natsTls">,
  nats: string,
  logger: Logger,
): NatsOptions {
  const options: NatsOptions = { url: nats, logger };
  if (config.natsCreds !== undefined) options.credsFile = config.natsCreds;
  if (config.natsTls !== undefined) options.tls = config.natsTls;
  return options;
}
