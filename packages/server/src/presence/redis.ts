// Presence in Redis (one Redis, Sentinel or Redis Cluster), shared by every
// instance: per room one hash, `${prefix}presence:{ROOM}`, field = client id,
// value = JSON {user, client, info, node}, beside a per-user count, the
// tombstones of swept entries and the lives of the instances that wrote it
// (redis-scripts.ts), all under the room's hash tag. An entry lives as long as
// its instance does: list() shows only entries whose instance still has its
// membership key (cluster/redis.ts), and every store sweeps now and then for
// instances that are gone (redis-sweep.ts): one claims each dead instance,
// removes its entries room by room and publishes their leaves on the rooms'
// channels, in the scripts that remove them. Liveness is asked outside the
// scripts, so that each script stays within one slot. As a safety net against
// hashes nobody touches again, each hash has a TTL that the instances with
// members in the room keep pushing back.

import { type Member, ProtocolError } from "crier-protocol";
import { Cluster } from "ioredis";
import type { Logger } from "pino";
import { encodeEnvelope } from "../broker/envelope.js";
import { messageOf } from "../describe-error.js";
import type { RedisClient } from "../redis/connection.js";
import { liveNodes } from "../redis/liveness.js";
import { type ScriptCall, StoreConnection } from "../redis/store-connection.js";
import { compareMembers, memberOf, type PresenceEntry, type PresenceStats, type PresenceStore } from "./presence.js";
import { Lives } from "./redis-lives.js";
import {
  ADD_SCRIPT,
  entryText,
  LIST_SCRIPT,
  PresenceKeys,
  parseEntry,
  REMOVE_SCRIPT,
  REWRITE_SCRIPT,
  STATS_SCRIPT,
  sharded,
} from "./redis-scripts.js";
import { RedisSweeper } from "./redis-sweep.js";
import { drop, forget, put, type Rooms, remember } from "./rooms.js";

export interface RedisPresenceOptions {
  /** redis://, rediss://, redis+sentinel:// or redis+cluster:// URL. */
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
   * publishes leaves and a rewrite joins; without it neither is announced. On
   * Redis Cluster it must carry the room's hash tag (a shard channel in the
   * room's slot, where the scripts SPUBLISH).
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
  private readonly lives: Lives;
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
  /** Each (room, node) this store indexed for a sweep to find, keyed `room \n node`, until its last entry there goes. */
  private readonly indexed = new Map<string, Promise<void>>();
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
    const shard = this.redis instanceof Cluster;
    this.lives = new Lives(this.conn, this.keys.nodes());
    this.addScript = this.conn.script("crierPresenceAdd", 4, ADD_SCRIPT);
    this.removeScript = this.conn.script("crierPresenceRemove", 4, REMOVE_SCRIPT);
    this.listScript = this.conn.script("crierPresenceList", 1, LIST_SCRIPT);
    this.statsScript = this.conn.script("crierPresenceStats", 2, STATS_SCRIPT);
    this.sweeper = new RedisSweeper({
      conn: this.conn,
      keys: this.keys,
      lives: this.lives,
      nodeKeyPrefix: this.nodeKeyPrefix,
      channel: (room) => this.announcedOn(room),
      shard,
      tombstoneMs: this.ttlMs,
      lockMs: options.sweepLockMs ?? 30_000,
    });
    this.rewriteScript = this.conn.script("crierPresenceRewrite", 4, sharded(REWRITE_SCRIPT, shard));
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
    if (this.nodeId !== undefined) await this.sweeper.sweepNode(this.nodeId, undefined);
  }

  isReady(): boolean {
    return this.conn.isReady();
  }

  async add(room: string, entry: PresenceEntry): Promise<void> {
    const { node } = entry;
    this.selves.add(node);
    put(this.own, room, entry);
    forget(this.unsure, room, entry.client);
    try {
      const life = await this.lives.of(node);
      // Indexed before the entry is written, so a sweep never misses a room this instance has entries in.
      await this.indexOnce(room, node, life);
      await this.conn.call(`presence add in ${room}`, () =>
        this.addScript(...this.keys.room(room), entry.client, entryText(entry), entry.user, this.ttlMs, node, life),
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
    const node = this.own.get(room)?.get(client)?.node;
    drop(this.own, room, client);
    try {
      await this.conn.call(`presence remove in ${room}`, () => this.removeScript(...this.keys.room(room), client));
      // The last entry of this instance in the room: the room leaves its index (a sweep would find nothing there).
      if (node !== undefined && !this.holds(room, node)) {
        this.indexed.delete(indexKey(room, node));
        await this.conn.call(`presence index of ${node}`, () => this.redis.hdel(this.keys.rooms(node), room));
      }
    } catch (err) {
      if (!this.own.get(room)?.has(client)) remember(this.unsure, room, client);
      throw err;
    }
  }

  async list(room: string): Promise<Member[]> {
    const reply = await this.conn.call(`presence list of ${room}`, () => this.listScript(this.keys.entries(room)));
    if (!Array.isArray(reply)) throw this.malformed("list", reply);
    const entries: Array<{ member: Member; node: string }> = [];
    for (const text of reply) {
      const parsed = typeof text === "string" ? parseEntry(text) : undefined;
      if (parsed === undefined) this.log.warn({ entry: String(text).slice(0, 200) }, "ignored a malformed entry");
      else entries.push(parsed);
    }
    if (entries.length === 0) return [];
    const live = await this.conn.call(`presence list of ${room}`, () =>
      liveNodes(
        this.redis,
        this.nodeKeyPrefix,
        entries.map((entry) => entry.node),
      ),
    );
    return entries
      .filter((entry) => live.has(entry.node))
      .map((entry) => entry.member)
      .sort(compareMembers);
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
    const rooms = [...this.own].map(([room, entries]) => ({ room, entries: [...entries.values()] }));
    const nodes = rooms.flatMap(({ entries }) => entries.map((entry) => entry.node));
    // New lives first: a sweep of the old ones, still under way, then leaves every room written again alone.
    writes.push(
      this.lives
        .renew(nodes)
        .then(() => Promise.all(rooms.map(({ room, entries }) => this.rewriteRoom(room, entries)))),
    );
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

  /** Whether this store still has an entry of `node` in `room`. */
  private holds(room: string, node: string): boolean {
    for (const entry of this.own.get(room)?.values() ?? []) if (entry.node === node) return true;
    return false;
  }

  /**
   * Indexes `room` for `node` in `life` unless done already (or `again`, for a
   * new life); concurrent adds wait for the same write.
   */
  private indexOnce(room: string, node: string, life: number, again = false): Promise<void> {
    const key = indexKey(room, node);
    let indexing = this.indexed.get(key);
    if (indexing === undefined || again) {
      indexing = this.index(room, node, life);
      this.indexed.set(key, indexing);
      const written = indexing;
      written.catch(() => {
        if (this.indexed.get(key) === written) this.indexed.delete(key);
      });
    }
    return indexing;
  }

  /** Records `room` in `node`'s index (what a sweep of it reads), with the life that writes it. */
  private async index(room: string, node: string, life: number): Promise<void> {
    await this.conn.call(`presence index of ${node}`, () => this.redis.hset(this.keys.rooms(node), room, life));
  }

  private async rewriteRoom(room: string, entries: PresenceEntry[]): Promise<void> {
    const channel = this.announcedOn(room);
    const byNode = new Map<string, PresenceEntry[]>();
    for (const entry of entries) {
      const group = byNode.get(entry.node);
      if (group === undefined) byNode.set(entry.node, [entry]);
      else group.push(entry);
    }
    for (const [node, own] of byNode) await this.rewriteRoomOf(room, channel, node, own);
  }

  /** Writes `node`'s entries of `room` again in its newest life, indexed first, in batches. */
  private async rewriteRoomOf(room: string, channel: string, node: string, entries: PresenceEntry[]): Promise<void> {
    const life = await this.lives.of(node);
    await this.indexOnce(room, node, life, true);
    for (let i = 0; i < entries.length; i += REWRITE_BATCH) {
      const args: Array<string | number> = [this.ttlMs, channel, node, life];
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
      const [entries, users, , lives] = this.keys.room(room);
      const keys = [entries, users, lives];
      Promise.all(keys.map((key) => this.redis.pexpire(key, this.ttlMs))).catch((err: unknown) =>
        this.log.debug({ err: messageOf(err), room }, "presence refresh failed"),
      );
    }
    // The registry of lives is what sweeps look through: should Redis have lost it, it learns them again.
    this.lives
      .remind()
      .catch((err: unknown) => this.log.debug({ err: messageOf(err) }, "presence registry refresh failed"));
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

function indexKey(room: string, node: string): string {
  return `${room}\n${node}`;
}
