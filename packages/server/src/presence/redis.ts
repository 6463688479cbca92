// Presence in Redis, shared by every instance: per room one hash,
// `${prefix}presence:{ROOM}`, field = client id, value = JSON
// {user, client, info, node, w}. An entry lives as long as its instance does:
// list() keeps the entries whose instance still has its membership key
// (cluster/redis.ts) and deletes the others, so a crashed instance's members
// disappear once it drops out of the cluster, without per-entry heartbeats.
// The node keys live in another hash slot than the room's hash (on Redis
// Cluster, another shard), so no one script may touch both: list() reads the
// hash, checks the nodes, then deletes each dead entry only if it still holds
// the very value it read. `w`, unique to each write, makes a rewrite (an
// instance that rejoined and wrote its entries again meanwhile) a different
// value, which that deletion leaves alone. As a safety net against hashes nobody lists again, each
// hash has a TTL that the instances with members in the room keep pushing back.

import { type Member, ProtocolError } from "crier-protocol";
import type { Logger } from "pino";
import { parseJsonObject } from "../json-object.js";
import type { RedisClient } from "../redis/connection.js";
import { type ScriptCall, StoreConnection } from "../redis/store-connection.js";
import { compareMembers, type PresenceEntry, type PresenceStore } from "./presence.js";
import { drop, put, type Rooms } from "./rooms.js";

export interface RedisPresenceOptions {
  /** redis:// or rediss:// URL. */
  url: string;
  /** Key prefix (default "crier:"); no braces, so a room's hash hashes on the room alone. */
  prefix?: string;
  /**
   * The membership's key prefix for node entries (cluster/redis.ts nodeKeyPrefix):
   * an entry whose node has no key under it belongs to an instance that is gone.
   */
  nodeKeyPrefix: string;
  /** A room's hash expires this long after the last add or refresh (default 1 h). */
  ttlMs?: number;
  /** How often the TTL of rooms with members on this instance is pushed back (default ttlMs / 3). */
  refreshMs?: number;
  /** Bound on connecting and on every command (default 2000). */
  timeoutMs?: number;
  /** Reconnect backoff: first delay and cap, with jitter (defaults 100 and 5000). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  logger?: Logger;
}

// Adds or replaces one entry and pushes the hash's expiry back.
const ADD_SCRIPT = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`;

// Deletes each field of ARGV (field, value pairs) that still holds that value.
const PRUNE_SCRIPT = `
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n`;

/** Tells apart every write of this process, so a rewritten entry never equals the one it replaced. */
let writes = 0;

export class RedisPresence implements PresenceStore {
  private readonly conn: StoreConnection;
  private readonly redis: RedisClient;
  private readonly url: string;
  private readonly prefix: string;
  private readonly nodeKeyPrefix: string;
  private readonly ttlMs: number;
  private readonly log: Logger;
  private readonly addScript: ScriptCall;
  private readonly pruneScript: ScriptCall;
  /** Entries this instance added and did not remove: rewritten after a reconnect or a rejoin, and kept from expiring. */
  private readonly own: Rooms = new Map();
  /** Removals that may not have reached Redis (it was unreachable): done again once it is back. */
  private readonly unsure = new Map<string, Set<string>>();
  private readonly timer: NodeJS.Timeout;
  private closing: Promise<void> | undefined;

  constructor(options: RedisPresenceOptions) {
    const prefix = options.prefix ?? "crier:";
    if (/[{}]/.test(prefix)) {
      throw new Error(`redis presence: the key prefix "${prefix}" must not contain braces`);
    }
    this.prefix = prefix;
    this.nodeKeyPrefix = options.nodeKeyPrefix;
    this.ttlMs = options.ttlMs ?? 3_600_000;
    this.conn = new StoreConnection({
      url: options.url,
      component: "presence",
      logger: options.logger,
      timeoutMs: options.timeoutMs,
      retryBaseMs: options.retryBaseMs,
      retryMaxMs: options.retryMaxMs,
      // Redis may have restarted empty, or missed removals while unreachable.
      onReconnect: () => this.reconcile(),
    });
    this.redis = this.conn.redis;
    this.url = this.conn.url;
    this.log = this.conn.log;
    this.addScript = this.conn.script("crierPresenceAdd", 1, ADD_SCRIPT);
    this.pruneScript = this.conn.script("crierPresencePrune", 1, PRUNE_SCRIPT);
    this.timer = setInterval(() => this.refresh(), options.refreshMs ?? Math.max(1, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
  }

  /** Resolves once Redis answers; rejects naming the URL if it does not within `timeoutMs`. */
  start(timeoutMs = 5000): Promise<void> {
    return this.conn.start(timeoutMs);
  }

  isReady(): boolean {
    return this.conn.isReady();
  }

  async add(room: string, entry: PresenceEntry): Promise<void> {
    put(this.own, room, entry);
    forget(this.unsure, room, entry.client);
    try {
      await this.conn.call(`presence add in ${room}`, () =>
        this.addScript(this.key(room), entry.client, stored(entry), this.ttlMs),
      );
    } catch (err) {
      // Not added as far as the caller knows; if the write did land, the next reconcile takes it out.
      if (this.own.get(room)?.get(entry.client) === entry) {
        drop(this.own, room, entry.client);
        remember(this.unsure, room, entry.client);
      }
      throw err;
    }
  }

  async remove(room: string, client: string): Promise<void> {
    drop(this.own, room, client);
    try {
      await this.conn.call(`presence remove in ${room}`, () => this.redis.hdel(this.key(room), client));
    } catch (err) {
      if (!this.own.get(room)?.has(client)) remember(this.unsure, room, client);
      throw err;
    }
  }

  /** The entries whose node is live; the others (and anything that is not an entry) are deleted. */
  async list(room: string): Promise<Member[]> {
    const what = `presence list of ${room}`;
    const key = this.key(room);
    const fields = await this.conn.call(what, () => this.redis.hgetall(key));
    if (typeof fields !== "object" || fields === null) throw this.malformed(fields);
    const entries: Array<{ field: string; text: string; node: string | undefined; member: Member | undefined }> = [];
    for (const [field, text] of Object.entries(fields)) {
      if (typeof text !== "string") throw this.malformed(fields);
      const node = parseJsonObject(text)?.node;
      entries.push({ field, text, node: typeof node === "string" ? node : undefined, member: parseMember(text) });
    }
    const live = await this.liveNodes(
      what,
      entries.map((entry) => entry.node),
    );
    const members: Member[] = [];
    const dead: string[] = [];
    for (const { field, text, node, member } of entries) {
      if (node !== undefined && member !== undefined && live.has(node)) members.push(member);
      else {
        if (member === undefined) this.log.warn({ entry: text.slice(0, 200) }, "deleted a malformed entry");
        dead.push(field, text);
      }
    }
    if (dead.length > 0) await this.conn.call(what, () => this.pruneScript(key, ...dead));
    return members.sort(compareMembers);
  }

  /** Which of `nodes` still have their membership key. */
  private async liveNodes(what: string, nodes: Array<string | undefined>): Promise<Set<string>> {
    const distinct = [...new Set(nodes.filter((node) => node !== undefined))];
    const live = new Set<string>();
    if (distinct.length === 0) return live;
    // Every node key shares one hash tag (cluster/redis.ts), so this pipeline goes to one node.
    const pipeline = this.redis.pipeline();
    for (const node of distinct) pipeline.exists(this.nodeKeyPrefix + node);
    const results = await this.conn.call(what, () => pipeline.exec());
    if (!Array.isArray(results)) throw this.malformed(results);
    distinct.forEach((node, i) => {
      const [err, exists] = (results[i] as [Error | null, unknown] | undefined) ?? [new Error("no reply"), 0];
      if (err !== null) throw this.malformed(err.message);
      if (exists === 1) live.add(node);
    });
    return live;
  }

  async rewrite(): Promise<void> {
    const writes = this.retryRemovals();
    for (const [room, entries] of this.own) {
      for (const entry of entries.values()) {
        writes.push(
          this.conn.call(`presence add in ${room}`, () =>
            this.addScript(this.key(room), entry.client, stored(entry), this.ttlMs),
          ),
        );
      }
    }
    const failed = (await Promise.allSettled(writes)).find((result) => result.status === "rejected");
    if (failed !== undefined) throw failed.reason;
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.conn.close();
  }

  private key(room: string): string {
    return `${this.prefix}presence:{${room}}`;
  }

  /** After a reconnect: removals that may have been missed, then this instance's entries again. */
  private reconcile(): void {
    if (this.own.size === 0 && this.unsure.size === 0) return;
    this.rewrite().then(
      () => this.log.info("presence entries written again after reconnecting"),
      (err: unknown) => this.log.warn({ err: messageOf(err) }, "could not write presence entries again"),
    );
  }

  /** Removals that failed, tried again; each is forgotten once it went through. */
  private retryRemovals(): Promise<unknown>[] {
    const removals: Promise<unknown>[] = [];
    for (const [room, clients] of this.unsure) {
      for (const client of clients) {
        removals.push(
          this.conn
            .call(`presence remove in ${room}`, () => this.redis.hdel(this.key(room), client))
            .then(() => forget(this.unsure, room, client)),
        );
      }
    }
    return removals;
  }

  /**
   * Pushes back the expiry of every room this instance has members in, and
   * retries removals that failed while the connection stayed up (timeouts).
   */
  private refresh(): void {
    if (!this.isReady()) return;
    for (const room of this.own.keys()) {
      this.redis.pexpire(this.key(room), this.ttlMs).catch((err: unknown) => {
        this.log.debug({ err: messageOf(err), room }, "presence refresh failed");
      });
    }
    for (const removal of this.retryRemovals()) {
      removal.catch((err: unknown) => this.log.debug({ err: messageOf(err) }, "presence removal failed again"));
    }
  }

  private malformed(reply: unknown): ProtocolError {
    this.log.error({ reply: JSON.stringify(reply).slice(0, 500) }, "unexpected reply listing presence");
    return new ProtocolError("internal", "unexpected reply listing presence");
  }
}

/** The stored text of `entry`, with a stamp unique to this write (see the top of this file). */
function stored(entry: PresenceEntry): string {
  writes++;
  return JSON.stringify({ ...entry, w: writes });
}

/** Parses a stored entry into the member clients see; undefined when it is not one. */
function parseMember(text: string): Member | undefined {
  const v = parseJsonObject(text);
  if (v === undefined) return undefined;
  if (typeof v.user !== "string" || typeof v.client !== "string") return undefined;
  const member: Member = { user: v.user, client: v.client };
  if (typeof v.info === "object" && v.info !== null && !Array.isArray(v.info)) member.info = v.info as Member["info"];
  return member;
}

function remember(sets: Map<string, Set<string>>, room: string, client: string): void {
  let clients = sets.get(room);
  if (clients === undefined) {
    clients = new Set();
    sets.set(room, clients);
  }
  clients.add(client);
}

function forget(sets: Map<string, Set<string>>, room: string, client: string): void {
  const clients = sets.get(room);
  if (clients === undefined) return;
  clients.delete(client);
  if (clients.size === 0) sets.delete(room);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
