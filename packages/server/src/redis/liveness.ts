// Which instances are live, as the Redis-backed stores judge it: an instance is
// live while its membership key (cluster/redis.ts nodeKeyPrefix) exists. Asked
// outside the stores' scripts, which on Redis Cluster may touch only the keys
// of one slot (a room's, a user's): the scripts are handed the verdict instead.

import type { RedisClient } from "./connection.js";

/** The live ones among `nodes`: one EXISTS per instance, sent together. */
export async function liveNodes(
  redis: RedisClient,
  nodeKeyPrefix: string,
  nodes: Iterable<string>,
): Promise<Set<string>> {
  const ids = [...new Set(nodes)];
  const found = await Promise.all(ids.map((id) => redis.exists(nodeKeyPrefix + id)));
  return new Set(ids.filter((_, i) => found[i] === 1));
}
