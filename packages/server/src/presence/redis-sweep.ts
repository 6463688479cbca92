// Sweeping an instance that is gone (docs/protocol.md "An instance crashes"):
// every store looks now and then for instances that have presence entries but
// no membership key; one claims each such instance with SET NX and removes its
// entries room by room, each room's removals and leaves in one script
// (redis-scripts.ts), so the leaves are published exactly once even if the
// sweeper dies half-way and another carries on.

import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { encodeEnvelope } from "../broker/envelope.js";
import type { ScriptCall, StoreConnection } from "../redis/store-connection.js";
import { type PresenceKeys, SWEEP_DONE_SCRIPT, SWEEP_ROOM_SCRIPT } from "./redis-scripts.js";

export interface SweeperOptions {
  conn: StoreConnection;
  keys: PresenceKeys;
  /** The membership's node key prefix: an instance without a key under it is gone. */
  nodeKeyPrefix: string;
  /** The channel a room's leaves go to, "" where the room announces none. */
  channel(room: string): string;
  /** How long the tombstones of swept entries are kept, for a rewrite to find. */
  tombstoneMs: number;
  /** How long a claim holds if its sweeper dies. */
  lockMs: number;
}

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
    this.roomScript = options.conn.script("crierPresenceSweepRoom", 3, SWEEP_ROOM_SCRIPT);
    this.doneScript = options.conn.script("crierPresenceSweepDone", 3, SWEEP_DONE_SCRIPT);
  }

  /** Finds the instances with entries that are no longer live and sweeps each one this store manages to claim. */
  async sweepDead(selves: ReadonlySet<string>): Promise<number> {
    const { conn, keys } = this.options;
    const nodes = await conn.call("presence sweep", () => conn.redis.smembers(keys.nodes()));
    if (!Array.isArray(nodes) || nodes.length === 0) return 0;
    const ids = nodes.filter((id): id is string => typeof id === "string" && !selves.has(id));
    const live = await conn.call("presence sweep", () =>
      Promise.all(ids.map((id) => conn.redis.exists(this.options.nodeKeyPrefix + id))),
    );
    let removed = 0;
    for (const [i, id] of ids.entries()) {
      if (!Array.isArray(live) || live[i] !== 0) continue;
      removed += await this.sweepNode(id);
    }
    return removed;
  }

  /**
   * Claims instance `node` (one sweeper per dead instance, cluster-wide) and
   * removes its entries room by room, each room's removals and leaves in one
   * script: were this sweeper to die half-way, the claim expires and another
   * carries on where it stopped, with no leave sent twice.
   */
  async sweepNode(node: string, earlier = false): Promise<number> {
    const { conn, keys } = this.options;
    const lock = keys.lock(node);
    // An earlier process of this node is swept without a claim (the scripts make a second sweep
    // harmless) and whether or not its node key has expired yet (`EXISTS ''` is 0 in the scripts).
    const claimed = earlier
      ? "OK"
      : await conn.call(`presence sweep of ${node}`, () =>
          conn.redis.set(lock, this.token, "PX", this.options.lockMs, "NX"),
        );
    if (claimed !== "OK") return 0;
    const rooms = await conn.call(`presence sweep of ${node}`, () => conn.redis.smembers(keys.rooms(node)));
    const nodeKey = earlier ? "" : this.options.nodeKeyPrefix + node;
    const suffix = `,"node":${JSON.stringify(node)}}`;
    let removed = 0;
    for (const room of Array.isArray(rooms) ? rooms : []) {
      if (typeof room !== "string") continue;
      const channel = this.options.channel(room);
      const [head, tail] = leaveHeader(node, room);
      const count = await conn.call(`presence sweep of ${node} in ${room}`, () =>
        this.roomScript(...keys.room(room), nodeKey, node, channel, head, tail, suffix, this.options.tombstoneMs),
      );
      if (count === -1) {
        this.log.info({ node }, "the instance came back while its presence entries were swept: stopped");
        break;
      }
      if (typeof count === "number") removed += count;
    }
    await conn.call(`presence sweep of ${node}`, () =>
      this.doneScript(keys.rooms(node), keys.nodes(), lock, nodeKey, node, this.token),
    );
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
