// Sweeping an instance that is gone (docs/protocol.md "An instance crashes"):
// every store looks now and then for instances that have presence entries but
// no membership key; one claims each such instance with SET NX and removes its
// entries room by room, each room's removals and leaves in one script
// (redis-scripts.ts), so the leaves are published exactly once even if the
// sweeper dies half-way and another carries on. Which instances are dead is
// asked here, outside the scripts (on Redis Cluster the membership keys are in
// another slot than any room's); the scripts get the life the instance had
// when it was found dead (redis-lives.ts) and leave a room alone that it has
// written again since.

import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { encodeEnvelope } from "../broker/envelope.js";
import { liveNodes } from "../redis/liveness.js";
import type { ScriptCall, StoreConnection } from "../redis/store-connection.js";
import type { Lives } from "./redis-lives.js";
import { type PresenceKeys, SWEEP_ROOM_SCRIPT, sharded } from "./redis-scripts.js";

export interface SweeperOptions {
  conn: StoreConnection;
  keys: PresenceKeys;
  lives: Lives;
  /** The membership's node key prefix: an instance without a key under it is gone. */
  nodeKeyPrefix: string;
  /** The channel a room's leaves go to, "" where the room announces none. */
  channel(room: string): string;
  /** Redis Cluster: leaves go out with SPUBLISH, on the room's shard channel. */
  shard: boolean;
  /** How long the tombstones of swept entries are kept, for a rewrite to find. */
  tombstoneMs: number;
  /** How long a claim holds if its sweeper dies. */
  lockMs: number;
}

// The end of a sweep: KEYS[1] the node's room index, KEYS[2] the sweep lock (one
// hash tag, the node's). ARGV[1] the life it was swept in ('' any), ARGV[2] the
// lock's token. Drops the rooms it indexed in that life or earlier, and the claim.
const SWEEP_DONE_SCRIPT = `
local dead = tonumber(ARGV[1])
if dead then
  local rooms = redis.call('HGETALL', KEYS[1])
  for i = 1, #rooms, 2 do
    if (tonumber(rooms[i + 1]) or 0) <= dead then redis.call('HDEL', KEYS[1], rooms[i]) end
  end
else
  redis.call('DEL', KEYS[1])
end
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 1`;

export class RedisSweeper {
  private readonly options: SweeperOptions;
  private readonly log: Logger;
  /** This sweeper's token on the claims it takes. */
  private readonly token = randomBytes(9).toString("base64url");
  private readonly roomScript: ScriptCall;
  private readonly doneScript: ScriptCall;

  constructor(options: SweeperOptions) {
    this.options = options;
    this.log = options.conn.log;
    this.roomScript = options.conn.script("crierPresenceSweepRoom", 4, sharded(SWEEP_ROOM_SCRIPT, options.shard));
    this.doneScript = options.conn.script("crierPresenceSweepDone", 2, SWEEP_DONE_SCRIPT);
  }

  /** Finds the instances with entries that are no longer live and sweeps each one this store manages to claim. */
  async sweepDead(selves: ReadonlySet<string>): Promise<number> {
    const { conn } = this.options;
    // Lives first, liveness after: an instance back in between has a newer life in every room it wrote again.
    const lives = await this.options.lives.all();
    const others = [...lives.keys()].filter((id) => !selves.has(id));
    if (others.length === 0) return 0;
    const live = await conn.call("presence sweep", () => liveNodes(conn.redis, this.options.nodeKeyPrefix, others));
    let removed = 0;
    for (const id of others) if (!live.has(id)) removed += await this.sweepNode(id, lives.get(id));
    return removed;
  }

  /**
   * Claims instance `node` (one sweeper per dead instance, cluster-wide) and
   * removes its entries room by room, each room's removals and leaves in one
   * script: were this sweeper to die half-way, the claim expires and another
   * carries on where it stopped, with no leave sent twice. `life` is the life
   * it was found dead in; undefined for an earlier process of this instance,
   * swept whole, without a claim (the scripts make a second sweep harmless).
   */
  async sweepNode(node: string, life: number | undefined): Promise<number> {
    const { conn, keys } = this.options;
    const lock = keys.lock(node);
    const claimed =
      life === undefined
        ? "OK"
        : await conn.call(`presence sweep of ${node}`, () =>
            conn.redis.set(lock, this.token, "PX", this.options.lockMs, "NX"),
          );
    if (claimed !== "OK") return 0;
    const rooms = await conn.call(`presence sweep of ${node}`, () => conn.redis.hkeys(keys.rooms(node)));
    const dead = life === undefined ? "" : life;
    const suffix = `,"node":${JSON.stringify(node)}}`;
    let removed = 0;
    let back = false;
    for (const room of rooms) {
      const channel = this.options.channel(room);
      const [head, tail] = leaveHeader(node, room);
      const count = await conn.call(`presence sweep of ${node} in ${room}`, () =>
        this.roomScript(...keys.room(room), node, dead, channel, head, tail, suffix, this.options.tombstoneMs),
      );
      if (count === -1) {
        this.log.info({ node }, "the instance came back while its presence entries were swept: stopped");
        back = true;
        break;
      }
      if (typeof count === "number") removed += count;
    }
    // Back: its index and its place in the registry stay (it wrote them again; a life of -1 keeps
    // every room), and only the claim goes.
    await conn.call(`presence sweep of ${node}`, () =>
      this.doneScript(keys.rooms(node), lock, back ? -1 : dead, this.token),
    );
    if (!back) await this.options.lives.forget(node, life);
    if (removed > 0) this.log.info({ node, removed }, "removed the presence entries of an instance that is gone");
    return removed;
  }
}

/**
 * The header of a leave envelope for `room` on behalf of `node`, cut around
 * the value of its "c" (client) field, which the sweep script fills in.
 */
function leaveHeader(node: string, room: string): [string, string] {
  const text = encodeEnvelope({ kind: "leave", node, room, client: "", data: "" });
  const at = text.lastIndexOf('"c":""');
  return [text.slice(0, at + 4), text.slice(at + 6)];
}
