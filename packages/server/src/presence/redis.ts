// Presence in Redis, shared by every instance: per room one hash,
// `${prefix}presence:{ROOM}`, field = client id, value = JSON
// {user, client, info, node}, beside a per-user count and the tombstones of
// swept entries (redis-scripts.ts). An entry lives as long as its instance
// does: list() shows only entries whose instance still has its membership key
// (cluster/redis.ts), and every store sweeps now and then for instances that
// are gone: one claims each dead instance with SET NX, removes its entries room
// by room and publishes their leaves on the rooms' channels, in the scripts
// that remove them. As a safety net against hashes nobody touches again, each
// hash has a TTL that the instances with members in the room keep pushing back.

import { type Member, ProtocolError } from "crier-protocol";
import type { Logger } from "pino";
import { encodeEnvelope } from "../broker/envelope.js";
import { messageOf } from "../describe-error.js";
import { parseJsonObject } from "../json-object.js";
import type { RedisClient } from "../redis/connection.js";
import { type ScriptCall, StoreConnection } from "../redis/store-connection.js";
import { compareMembers, memberOf, type PresenceEntry, type PresenceStats, type PresenceStore } from "./presence.js";
import { ADD_SCRIPT, LIST_SCRIPT, PresenceKeys, REMOVE_SCRIPT, REWRITE_SCRIPT, STATS_SCRIPT } from "./redis-scripts.js";
import { RedisSweeper } from "./redis-sweep.js";
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
  /**
   * This instance's id. At start, entries left under it by an earlier process
   * with the same id (it crashed and was restarted before anyone swept it) are
   * swept, their leaves announced: none of them is connected any more.
   */
  nodeId?: string;
  /**
   * The broker channel of a room (broker/broker.ts ChannelNames), where a sweep
   * publishes leaves and a rewrite joins; without it neither is announced.
   */
  channel?: (room: string) => string;
  /** Whether `room` announces joins and leaves (its namespace's joinLeave; default: every room). */
  announces?: (room: string) => boolean;
  /** A room's hash expires this long after the last add or refresh (default 1 h). */
  ttlMs?: number;
  /** How often the TTL of rooms with members on this instance is pushed back (default ttlMs / 3). */
  refreshMs?: number;
  /** How often to look for instances that are gone and sweep them (default 3000; 0: only when sweep() is called). */
  sweepMs?: number;
  /** How long a claim on sweeping one dead instance holds if its sweeper dies (default 30000). */
  sweepLockMs?: number;
  /** Bound on connecting and on every command (default 2000). */
  timeoutMs?: number;
  /** Reconnect backoff: first delay and cap, with jitter (defaults 100 and 5000). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  logger?: Logger;
}

/** Scripted entries per rewrite call: bounds one script's run (and its argument list) in a big room. */
const REWRITE_BATCH = 500;

export class RedisPresence implements PresenceStore {
  private readonly conn: StoreConnection;
  private readonly redis: RedisClient;
  private readonly keys: PresenceKeys;
  private readonly nodeKeyPrefix: string;
  private readonly sweeper: RedisSweeper;
  private readonly channel: ((room: string) => string) | undefined;
  private readonly announces: (room: string) => boolean;
  private readonly ttlMs: number;
  private readonly log: Logger;
  private readonly addScript: ScriptCall;
  private readonly removeScript: ScriptCall;
  private readonly listScript: ScriptCall;
  private readonly statsScript: ScriptCall;
  private readonly rewriteScript: ScriptCall;
  /** Entries this instance added and did not remove: rewritten after a reconnect or a rejoin, and kept from expiring. */
  private readonly own: Rooms = new Map();
  /** Removals that may not have reached Redis (it was unreachable): done again once it is back. */
  private readonly unsure = new Map<string, Set<string>>();
  /**
   * The instances this store adds entries for (in production, its own): never
   * swept from here, even when this one resumes from a stall and sweeps before
   * its heartbeat has announced it again.
   */
  private readonly selves = new Set<string>();
  private readonly nodeId: string | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private sweeping: Promise<number> | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: RedisPresenceOptions) {
    const prefix = options.prefix ?? "crier:";
    if (/[{}]/.test(prefix)) {
      throw new Error(`redis presence: the key prefix "${prefix}" must not contain braces`);
    }
    this.keys = new PresenceKeys(prefix);
    this.nodeKeyPrefix = options.nodeKeyPrefix;
    this.nodeId = options.nodeId;
    if (options.nodeId !== undefined) this.selves.add(options.nodeId);
    this.channel = options.channel;
    this.announces = options.announces ?? (() => true);
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
    this.log = this.conn.log;
    this.addScript = this.conn.script("crierPresenceAdd", 3, ADD_SCRIPT);
    this.removeScript = this.conn.script("crierPresenceRemove", 3, REMOVE_SCRIPT);
    this.listScript = this.conn.script("crierPresenceList", 1, LIST_SCRIPT);
    this.statsScript = this.conn.script("crierPresenceStats", 2, STATS_SCRIPT);
    this.sweeper = new RedisSweeper({
      conn: this.conn,
      keys: this.keys,
      nodeKeyPrefix: this.nodeKeyPrefix,
      channel: (room) => this.announcedOn(room),
      tombstoneMs: this.ttlMs,
      lockMs: options.sweepLockMs ?? 30_000,
    });
    this.rewriteScript = this.conn.script("crierPresenceRewrite", 3, REWRITE_SCRIPT);
    this.every(options.refreshMs ?? Math.max(1, Math.floor(this.ttlMs / 3)), () => this.refresh());
    const sweepMs = options.sweepMs ?? 3000;
    if (sweepMs > 0) this.every(sweepMs, () => this.sweepSoon());
  }

  /**
   * Resolves once Redis answers and what an earlier process of this node id
   * left is swept; rejects naming the URL if Redis does not answer within `timeoutMs`.
   */
  async start(timeoutMs = 5000): Promise<void> {
    await this.conn.start(timeoutMs);
    if (this.nodeId !== undefined) await this.sweeper.sweepNode(this.nodeId, true);
  }

  isReady(): boolean {
    return this.conn.isReady();
  }

  async add(room: string, entry: PresenceEntry): Promise<void> {
    const first = !this.own.has(room);
    this.selves.add(entry.node);
    put(this.own, room, entry);
    forget(this.unsure, room, entry.client);
    try {
      // Indexed before the entry is written (one connection keeps the order without a round trip
      // between), so a sweep never misses a room this instance has entries in.
      await Promise.all([
        first ? this.index(room, entry.node) : undefined,
        this.conn.call(`presence add in ${room}`, () =>
          this.addScript(...this.keys.room(room), entry.client, entryText(entry), entry.user, this.ttlMs),
        ),
      ]);
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
    const node = this.own.get(room)?.get(client)?.node;
    drop(this.own, room, client);
    try {
      await this.conn.call(`presence remove in ${room}`, () => this.removeScript(...this.keys.room(room), client));
      // The last entry of this instance in the room: the room leaves its index (a sweep would find nothing there).
      if (node !== undefined && !this.own.has(room)) {
        await this.conn.call(`presence index of ${node}`, () => this.redis.srem(this.keys.rooms(node), room));
      }
    } catch (err) {
      if (!this.own.get(room)?.has(client)) remember(this.unsure, room, client);
      throw err;
    }
  }

  async list(room: string): Promise<Member[]> {
    const reply = await this.conn.call(`presence list of ${room}`, () =>
      this.listScript(this.keys.entries(room), this.nodeKeyPrefix),
    );
    if (!Array.isArray(reply)) throw this.malformed("list", reply);
    const members: Member[] = [];
    for (const text of reply) {
      const member = typeof text === "string" ? parseMember(text) : undefined;
      if (member === undefined) this.log.warn({ entry: String(text).slice(0, 200) }, "ignored a malformed entry");
      else members.push(member);
    }
    return members.sort(compareMembers);
  }

  async stats(room: string): Promise<PresenceStats> {
    const [entries, users] = this.keys.room(room);
    const reply = await this.conn.call(`presence stats of ${room}`, () => this.statsScript(entries, users));
    if (!Array.isArray(reply) || typeof reply[0] !== "number" || typeof reply[1] !== "number") {
      throw this.malformed("stats", reply);
    }
    return { clients: reply[0], users: reply[1] };
  }

  /** One sweep at a time per store: the timer's and an explicit call share it. */
  sweep(): Promise<number> {
    this.sweeping ??= this.sweeper.sweepDead(this.selves).finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  async rewrite(): Promise<void> {
    const writes = this.retryRemovals();
    for (const [room, entries] of this.own) writes.push(this.rewriteRoom(room, [...entries.values()]));
    const failed = (await Promise.allSettled(writes)).find((result) => result.status === "rejected");
    if (failed !== undefined) throw failed.reason;
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    await this.sweeping?.catch(() => 0);
    await this.conn.close();
  }

  private every(ms: number, run: () => void): void {
    const timer = setInterval(run, ms);
    timer.unref();
    this.timers.push(timer);
  }

  /** The channel where `room`'s joins and leaves go, or "" where none are announced. */
  private announcedOn(room: string): string {
    return this.channel !== undefined && this.announces(room) ? this.channel(room) : "";
  }

  private index(room: string, node: string): Promise<unknown> {
    return this.conn.call(`presence index of ${node}`, () =>
      Promise.all([this.redis.sadd(this.keys.nodes(), node), this.redis.sadd(this.keys.rooms(node), room)]),
    );
  }

  private async rewriteRoom(room: string, entries: PresenceEntry[]): Promise<void> {
    const channel = this.announcedOn(room);
    const nodes = new Set(entries.map((entry) => entry.node));
    for (const node of nodes) await this.index(room, node);
    for (let i = 0; i < entries.length; i += REWRITE_BATCH) {
      const args: Array<string | number> = [this.ttlMs, channel];
      for (const entry of entries.slice(i, i + REWRITE_BATCH)) {
        const member = memberOf(entry);
        const join = encodeEnvelope({
          kind: "join",
          room,
          client: entry.client,
          node: entry.node,
          data: JSON.stringify(member),
        });
        args.push(entry.client, entryText(entry), entry.user, join);
      }
      await this.conn.call(`presence add in ${room}`, () => this.rewriteScript(...this.keys.room(room), ...args));
    }
  }

  private sweepSoon(): void {
    if (!this.isReady()) return;
    this.sweep().catch((err: unknown) => this.log.warn({ err: messageOf(err) }, "presence sweep failed"));
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
            .call(`presence remove in ${room}`, () => this.removeScript(...this.keys.room(room), client))
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
      const [entries, users] = this.keys.room(room);
      Promise.all([this.redis.pexpire(entries, this.ttlMs), this.redis.pexpire(users, this.ttlMs)]).catch(
        (err: unknown) => this.log.debug({ err: messageOf(err), room }, "presence refresh failed"),
      );
    }
    for (const removal of this.retryRemovals()) {
      removal.catch((err: unknown) => this.log.debug({ err: messageOf(err) }, "presence removal failed again"));
    }
  }

  private malformed(script: string, reply: unknown): ProtocolError {
    this.log.error(
      { reply: JSON.stringify(reply).slice(0, 500) },
      `unexpected reply from the presence ${script} script`,
    );
    return new ProtocolError("internal", `unexpected reply from the presence ${script} script`);
  }
}

/**
 * The stored form: the member exactly as its join carries it, with the node
 * last, so the sweep script gets the join's member back by cutting the node off.
 */
function entryText(entry: PresenceEntry): string {
  return JSON.stringify({ ...memberOf(entry), node: entry.node });
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
