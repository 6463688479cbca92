// Presence in Redis, shared by every instance: per room one hash,
// `${prefix}presence:{ROOM}`, field = client id, value = JSON
// {user, client, info, node}. An entry lives as long as its instance does:
// list() keeps the entries whose instance still has its membership key
// (cluster/redis.ts) and deletes the others in the same script, so a crashed
// instance's members disappear once it drops out of the cluster, without
// per-entry heartbeats. As a safety net against hashes nobody lists again, each
// hash has a TTL that the instances with members in the room keep pushing back.

import { type Member, ProtocolError } from "crier-protocol";
import { Redis } from "ioredis";
import { type Logger, pino } from "pino";
import { backoffDelay, quit, redactUrl } from "../redis/connection.js";
import { compareMembers, type PresenceEntry, type PresenceStore } from "./presence.js";

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

// Returns the entries whose node is live and deletes the rest (and anything
// that is not an entry), in one atomic step: an instance that announces itself
// again before rewriting its entries never has the rewritten ones pruned.
// Node keys come from ARGV, which is fine on one Redis (as in the membership);
// Redis Cluster would need them under the room's hash tag.
const LIST_SCRIPT = `
local fields = redis.call('HGETALL', KEYS[1])
local live = {}
local out = {}
for i = 1, #fields, 2 do
  local value = fields[i + 1]
  local ok, entry = pcall(cjson.decode, value)
  local node = ok and type(entry) == 'table' and entry.node or nil
  if type(node) == 'string' then
    if live[node] == nil then live[node] = redis.call('EXISTS', ARGV[1] .. node) == 1 end
    if live[node] then out[#out + 1] = value else redis.call('HDEL', KEYS[1], fields[i]) end
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
return out`;

type ScriptCall = (...args: Array<string | number>) => Promise<unknown>;
type Rooms = Map<string, Map<string, PresenceEntry>>;

/** Replies Redis gives while it cannot serve writes for now: unavailable, not a bug. */
const TRANSIENT_REPLY = /^(LOADING|OOM|READONLY|MASTERDOWN|BUSY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS)\b/;

export class RedisPresence implements PresenceStore {
  private readonly redis: Redis;
  private readonly url: string;
  private readonly prefix: string;
  private readonly nodeKeyPrefix: string;
  private readonly ttlMs: number;
  private readonly log: Logger;
  private readonly addScript: ScriptCall;
  private readonly listScript: ScriptCall;
  /** Entries this instance added and did not remove: rewritten after a reconnect or a rejoin, and kept from expiring. */
  private readonly own: Rooms = new Map();
  /** Removals that may not have reached Redis (it was unreachable): done again once it is back. */
  private readonly unsure = new Map<string, Set<string>>();
  /** Rejections of calls in flight, settled at once when the connection drops. */
  private readonly inFlight = new Set<(err: Error) => void>();
  private readonly firstAttempt: Promise<void>;
  private firstAttemptDone = false;
  private readonly timer: NodeJS.Timeout;
  private up = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(options: RedisPresenceOptions) {
    const prefix = options.prefix ?? "crier:";
    if (/[{}]/.test(prefix)) {
      throw new Error(`redis presence: the key prefix "${prefix}" must not contain braces`);
    }
    this.prefix = prefix;
    this.nodeKeyPrefix = options.nodeKeyPrefix;
    this.ttlMs = options.ttlMs ?? 3_600_000;
    this.url = redactUrl(options.url);
    this.log = (options.logger ?? pino({ enabled: false })).child({ component: "presence", redis: this.url });
    const timeoutMs = options.timeoutMs ?? 2000;
    this.redis = new Redis(options.url, {
      lazyConnect: true,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      retryStrategy: (attempt: number) => backoffDelay(attempt, options.retryBaseMs ?? 100, options.retryMaxMs ?? 5000),
      // Nothing queued while down: a subscribe to a room with presence gets `unavailable` now.
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      disconnectTimeout: 200,
      // The writes of a rewrite, or of many subscribes in one tick, leave in one write.
      enableAutoPipelining: true,
      connectionName: "crier-presence",
    });
    this.addScript = scriptCommand(this.redis, "crierPresenceAdd", ADD_SCRIPT);
    this.listScript = scriptCommand(this.redis, "crierPresenceList", LIST_SCRIPT);
    this.firstAttempt = new Promise((resolve) => {
      const settle = (): void => {
        this.firstAttemptDone = true;
        resolve();
      };
      this.redis.once("ready", settle);
      this.redis.once("close", settle);
    });
    this.redis.on("error", (err: Error) => this.log.debug({ err }, "redis connection error"));
    this.redis.on("ready", () => {
      const again = this.firstAttemptDone;
      this.up = true;
      this.log.info("redis presence ready");
      // Redis may have restarted empty, or missed removals while unreachable.
      if (again) this.reconcile();
    });
    this.redis.on("close", () => {
      if (this.up && !this.closed) this.log.warn("redis presence connection lost; reconnecting");
      this.up = false;
      this.settleInFlight(`connection to redis at ${this.url} lost`);
    });
    this.redis.connect().catch(() => {});
    this.timer = setInterval(() => this.refresh(), options.refreshMs ?? Math.max(1, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
  }

  /** Resolves once Redis answers; rejects naming the URL if it does not within `timeoutMs`. */
  async start(timeoutMs = 5000): Promise<void> {
    if (this.redis.status === "ready") return;
    if (this.closed) throw new Error("redis presence: start() after close()");
    let timer: NodeJS.Timeout | undefined;
    let onReady = (): void => {};
    const ready = await new Promise<boolean>((resolve) => {
      onReady = () => resolve(true);
      this.redis.once("ready", onReady);
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    clearTimeout(timer);
    this.redis.off("ready", onReady);
    if (!ready) throw new Error(`redis presence: cannot reach Redis at ${this.url} within ${timeoutMs} ms`);
  }

  isReady(): boolean {
    return !this.closed && this.redis.status === "ready";
  }

  async add(room: string, entry: PresenceEntry): Promise<void> {
    put(this.own, room, entry);
    forget(this.unsure, room, entry.client);
    try {
      await this.call(`presence add in ${room}`, () =>
        this.addScript(this.key(room), entry.client, JSON.stringify(entry), this.ttlMs),
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
      await this.call(`presence remove in ${room}`, () => this.redis.hdel(this.key(room), client));
    } catch (err) {
      if (!this.own.get(room)?.has(client)) remember(this.unsure, room, client);
      throw err;
    }
  }

  async list(room: string): Promise<Member[]> {
    const reply = await this.call(`presence list of ${room}`, () =>
      this.listScript(this.key(room), this.nodeKeyPrefix),
    );
    if (!Array.isArray(reply)) throw this.malformed(reply);
    const members: Member[] = [];
    for (const text of reply) {
      const member = typeof text === "string" ? parseMember(text) : undefined;
      if (member === undefined) this.log.warn({ entry: String(text).slice(0, 200) }, "ignored a malformed entry");
      else members.push(member);
    }
    return members.sort(compareMembers);
  }

  async rewrite(): Promise<void> {
    const writes = this.retryRemovals();
    for (const [room, entries] of this.own) {
      for (const entry of entries.values()) {
        writes.push(
          this.call(`presence add in ${room}`, () =>
            this.addScript(this.key(room), entry.client, JSON.stringify(entry), this.ttlMs),
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
    this.closed = true;
    clearInterval(this.timer);
    this.settleInFlight("the presence store is closed");
    await quit(this.redis);
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
          this.call(`presence remove in ${room}`, () => this.redis.hdel(this.key(room), client)).then(() =>
            forget(this.unsure, room, client),
          ),
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

  /** Fails fast with `unavailable` while Redis is unreachable (as RedisHistory does). */
  private async call(what: string, run: () => Promise<unknown>): Promise<unknown> {
    if (!this.firstAttemptDone && !this.closed) await this.firstAttempt;
    if (this.closed) throw new ProtocolError("unavailable", "the presence store is closed");
    if (this.redis.status !== "ready") {
      throw new ProtocolError("unavailable", `${what} failed: redis at ${this.url} is unreachable`);
    }
    return new Promise((resolve, reject) => {
      const fail = (err: Error): void => {
        this.inFlight.delete(fail);
        reject(this.classify(what, err));
      };
      this.inFlight.add(fail);
      run().then(
        (value) => {
          this.inFlight.delete(fail);
          resolve(value);
        },
        (err: unknown) => fail(err instanceof Error ? err : new Error(String(err))),
      );
    });
  }

  private classify(what: string, err: Error): ProtocolError {
    if (err instanceof ProtocolError) return err;
    if (err.name === "ReplyError" && !TRANSIENT_REPLY.test(err.message)) {
      this.log.error({ err }, `redis ${what} failed`);
      return new ProtocolError("internal", `${what} failed: ${err.message}`);
    }
    return new ProtocolError("unavailable", `${what} failed: ${err.message}`);
  }

  private malformed(reply: unknown): ProtocolError {
    this.log.error({ reply: JSON.stringify(reply).slice(0, 500) }, "unexpected reply from the presence list script");
    return new ProtocolError("internal", "unexpected reply from the presence list script");
  }

  private settleInFlight(why: string): void {
    const pending = [...this.inFlight];
    this.inFlight.clear();
    for (const fail of pending) fail(new Error(why));
  }
}

/** Parses a stored entry into the member clients see; undefined when it is not one. */
function parseMember(text: string): Member | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.user !== "string" || typeof v.client !== "string") return undefined;
  const member: Member = { user: v.user, client: v.client };
  if (typeof v.info === "object" && v.info !== null && !Array.isArray(v.info)) member.info = v.info as Member["info"];
  return member;
}

function put(rooms: Rooms, room: string, entry: PresenceEntry): void {
  let entries = rooms.get(room);
  if (entries === undefined) {
    entries = new Map();
    rooms.set(room, entries);
  }
  entries.set(entry.client, entry);
}

function drop(rooms: Rooms, room: string, client: string): void {
  const entries = rooms.get(room);
  if (entries === undefined) return;
  entries.delete(client);
  if (entries.size === 0) rooms.delete(room);
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

/** Defines a script as a command (EVALSHA, and EVAL once after a NOSCRIPT, e.g. after a Redis restart). */
function scriptCommand(conn: Redis, name: string, lua: string): ScriptCall {
  conn.defineCommand(name, { numberOfKeys: 1, lua });
  const command: unknown = Reflect.get(conn, name);
  if (typeof command !== "function") throw new Error(`redis presence: defining the ${name} script failed`);
  return (...args) => Promise.resolve(command.apply(conn, args));
}
