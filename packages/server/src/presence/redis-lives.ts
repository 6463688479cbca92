// The lives of the instances with presence entries in Redis. An instance takes
// a new life each time it (re)writes its entries after being out of the
// cluster, larger than any it had before; its entries' rooms record the life
// that wrote them (redis-scripts.ts). A sweep reads an instance's life before
// asking whether it is live and carries that life into each room's script, so a
// room the instance wrote again meanwhile (a newer life) is left alone: the
// comparison happens inside the room's own slot, where Redis Cluster lets a
// script look. The registry, `presence-instances` (node -> newest life), is what
// sweeps look through; it has a slot of its own.

import { ProtocolError } from "crier-protocol";
import type { ScriptCall, StoreConnection } from "../redis/store-connection.js";

// KEYS[1] the registry; ARGV[1] the node, ARGV[2] a life it holds ('' for a new one).
// A new life is the registry's clock in ms, or one more than the node's last if
// that is later; a life held is written back unless the registry knows a newer one.
const LIFE_SCRIPT = `
local known = tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0
local life = tonumber(ARGV[2])
if not life then
  local now = redis.call('TIME')
  life = math.max(known + 1, tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
end
if life > known then redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', life)) end
return string.format('%d', life)`;

// KEYS[1] the registry; ARGV[1] the node, ARGV[2] the life it was swept in ('' any).
// Forgets the node unless it has taken a newer life since.
const FORGET_SCRIPT = `
local known = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
local dead = tonumber(ARGV[2])
if known and (not dead or known <= dead) then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1`;

export class Lives {
  private readonly conn: StoreConnection;
  private readonly key: string;
  private readonly lifeScript: ScriptCall;
  private readonly forgetScript: ScriptCall;
  /** The life this store writes each instance's entries in. */
  private readonly held = new Map<string, Promise<number>>();

  constructor(conn: StoreConnection, key: string) {
    this.conn = conn;
    this.key = key;
    this.lifeScript = conn.script("crierPresenceLife", 1, LIFE_SCRIPT);
    this.forgetScript = conn.script("crierPresenceForget", 1, FORGET_SCRIPT);
  }

  /** The life `node`'s entries are written in; a new one the first time. */
  of(node: string): Promise<number> {
    let life = this.held.get(node);
    if (life === undefined) {
      life = this.take(node);
      this.held.set(node, life);
      // A failed take is tried again by the next caller.
      life.catch(() => {
        if (this.held.get(node) === life) this.held.delete(node);
      });
    }
    return life;
  }

  /** Takes a new life for each of `nodes`, before their entries are written again. */
  async renew(nodes: Iterable<string>): Promise<void> {
    const taken = [...new Set(nodes)].map((node) => {
      const life = this.take(node);
      this.held.set(node, life);
      return life;
    });
    await Promise.all(taken);
  }

  /** Writes the lives held back into the registry, which may have lost them (a restart, a failover). */
  async remind(): Promise<void> {
    const lives = [...this.held].map(async ([node, life]) => {
      const held = await life;
      await this.conn.call(`presence life of ${node}`, () => this.lifeScript(this.key, node, held));
    });
    await Promise.all(lives);
  }

  /** Every instance with entries, and its newest life. */
  async all(): Promise<Map<string, number>> {
    const reply = await this.conn.call("presence sweep", () => this.conn.redis.hgetall(this.key));
    const lives = new Map<string, number>();
    for (const [node, life] of Object.entries(reply)) {
      const value = Number(life);
      if (Number.isSafeInteger(value)) lives.set(node, value);
    }
    return lives;
  }

  /** Forgets `node` once swept in life `dead` (any life when undefined), unless it has taken a newer one. */
  async forget(node: string, dead: number | undefined): Promise<void> {
    await this.conn.call(`presence sweep of ${node}`, () =>
      this.forgetScript(this.key, node, dead === undefined ? "" : dead),
    );
  }

  private async take(node: string): Promise<number> {
    const reply = await this.conn.call(`presence life of ${node}`, () => this.lifeScript(this.key, node, ""));
    const life = Number(reply);
    if (!Number.isSafeInteger(life))
      throw new ProtocolError("internal", `unexpected reply from the presence life script: ${String(reply)}`);
    return life;
  }
}
