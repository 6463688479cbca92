// The listening side of RedisBroker, one per engine: on one Redis a single
// connection SUBSCRIBEs to every channel; on Redis Cluster channels are shard
// channels, each SSUBSCRIBEd on a connection to the master that owns its slot
// (one connection per master), so a message travels only within its shard.
// Either way the broker's set of wanted channels is the source of truth: a
// connection that comes back subscribes exactly those again, and is "live"
// only once Redis confirmed it. On the cluster the slot map is read again
// (CLUSTER SLOTS) periodically and at once when a master's connection drops,
// so after a failover or resharding each channel moves to its new master.

import { ProtocolError } from "crier-protocol";
import { type Cluster, Redis, type RedisOptions } from "ioredis";
import type { Logger } from "pino";
import { messageOf } from "../describe-error.js";
import { createRedis, quit } from "../redis/connection.js";
import { keySlot, SLOTS } from "../redis/slot.js";
import { RoundTrips } from "./round-trips.js";

export interface SubscriptionHooks {
  /** The channels the hub wants (owned by the broker). */
  wanted: ReadonlySet<string>;
  log: Logger;
  /** The URL with any password masked, for errors. */
  url: string;
  onMessage(channel: string, text: string): void;
  /** Liveness may have changed: the broker recomputes its readiness. */
  onLiveChange(): void;
  /** A connection failed or closed (`why`), for the broker's "last error". */
  onTrouble(why: string): void;
  /** Channels subscribed again on another connection (their slot moved) while the broker stayed ready. */
  onResubscribed(channels: string[]): void;
}

export interface Subscriptions {
  connect(): void;
  /** Subscribes `channel` (already wanted); rejects with `unavailable` while its connection is down. */
  subscribe(channel: string): Promise<void>;
  /** Unsubscribes `channel` (no longer wanted); nothing to do while down. */
  unsubscribe(channel: string): Promise<void>;
  /** Every wanted channel is subscribed and confirmed. */
  isLive(): boolean;
  /** PINGs the connections so a silently dead socket is noticed and replaced. */
  healthCheck(): void;
  close(): Promise<void>;
}

/** One connection, kept in subscriber mode, and whether its channels are confirmed. */
class Listener {
  readonly conn: Redis;
  readonly trips: RoundTrips;
  live = false;
  /** Bumped on every connect/disconnect, so a late resubscribe result of an old connection is ignored. */
  private generation = 0;
  private closed = false;
  /** Settles when the first connection attempt does: live, or closed. */
  readonly firstAttempt: Promise<void>;
  private settleFirst: () => void = () => {};

  constructor(
    conn: Redis,
    private readonly role: string,
    private readonly channels: () => Iterable<string>,
    private readonly sharded: boolean,
    private readonly hooks: SubscriptionHooks,
    private readonly onDown: () => void = () => {},
  ) {
    this.conn = conn;
    this.trips = new RoundTrips(hooks.log);
    this.firstAttempt = new Promise((resolve) => {
      this.settleFirst = resolve;
    });
    conn.on("error", (err: Error) => {
      hooks.onTrouble(err.message);
      hooks.log.debug({ err, connection: role }, "redis connection error");
      // A master whose slots moved away drops their shard channels' subscribers with an
      // unsubscribe nobody asked for; ioredis reports it so, and its idea of this
      // connection's subscriptions may be wrong since: start afresh.
      if (err.message.startsWith("Command queue state error")) {
        hooks.log.info({ connection: role }, "the master dropped subscriptions on its own (resharding): resubscribing");
        this.reconnect();
      }
    });
    conn.on("ready", () => void this.resubscribe());
    conn.on("close", () => {
      // A killed server just closes the socket, with no "error" to explain it.
      hooks.onTrouble("");
      this.live = false;
      this.generation++;
      this.trips.settle(`connection to redis at ${hooks.url} lost`);
      this.settleFirst();
      hooks.onLiveChange();
      if (!this.closed) this.onDown();
    });
    conn.on(sharded ? "smessage" : "message", (channel: string, text: string) => hooks.onMessage(channel, text));
  }

  connect(): void {
    this.conn.connect().catch(() => {});
  }

  ready(): boolean {
    return this.conn.status === "ready";
  }

  subscribe(channels: string[], what: string): Promise<unknown> {
    return this.trips.run(this.sharded ? this.conn.ssubscribe(...channels) : this.conn.subscribe(...channels), what);
  }

  unsubscribe(channel: string): Promise<unknown> {
    const command = this.sharded ? this.conn.sunsubscribe(channel) : this.conn.unsubscribe(channel);
    return this.trips.run(command, `unsubscribe ${channel}`);
  }

  healthCheck(): void {
    if (this.closed || this.conn.status !== "ready") return;
    this.trips.run(this.conn.ping(), "ping").catch((err: unknown) => {
      if (this.closed || this.conn.status !== "ready") return;
      this.hooks.log.warn({ err: messageOf(err), connection: this.role }, "redis did not answer PING; reconnecting");
      this.hooks.onTrouble(`no answer to PING: ${messageOf(err)}`);
      this.live = false;
      this.hooks.onLiveChange();
      this.conn.disconnect(true);
    });
  }

  /** Drops the connection; it reconnects and subscribes its channels again. */
  reconnect(): void {
    if (!this.closed && this.conn.status === "ready") this.conn.disconnect(true);
  }

  close(): Promise<void> {
    this.closed = true;
    this.trips.settle("the broker is closed");
    return quit(this.conn);
  }

  /** Subscribes every channel again; SSUBSCRIBE takes channels of one slot at a time. */
  private async resubscribe(): Promise<void> {
    const generation = ++this.generation;
    const groups = new Map<number, string[]>();
    for (const channel of this.channels()) {
      const slot = this.sharded ? keySlot(channel) : 0;
      const group = groups.get(slot);
      if (group === undefined) groups.set(slot, [channel]);
      else group.push(channel);
    }
    let count = 0;
    try {
      await Promise.all(
        [...groups.values()].map((channels) => {
          count += channels.length;
          return this.subscribe(channels, "resubscribe");
        }),
      );
    } catch (err) {
      // The connection dropped again (the next "ready" retries) or Redis did not
      // answer in time: reconnect rather than stay up with channels missing.
      this.hooks.log.warn({ err, channels: count, connection: this.role }, "resubscribe failed; reconnecting");
      if (generation === this.generation && !this.closed) this.conn.disconnect(true);
      return;
    }
    if (generation !== this.generation || this.closed) return;
    if (count > 0) this.hooks.log.info({ channels: count, connection: this.role }, "resubscribed after reconnect");
    this.live = true;
    this.settleFirst();
    this.hooks.onLiveChange();
  }
}

/** One Redis: one connection subscribed to every wanted channel. */
export class SingleSubscriptions implements Subscriptions {
  private readonly listener: Listener;
  private readonly hooks: SubscriptionHooks;

  constructor(url: string, options: RedisOptions, hooks: SubscriptionHooks) {
    // Resubscription is ours: ioredis's autoResubscribe does not tell us when
    // it is confirmed, and readiness must wait for that.
    const conn = createRedis(url, { ...options, autoResubscribe: false });
    this.listener = new Listener(conn, "sub", () => hooks.wanted, false, hooks);
    this.hooks = hooks;
  }

  connect(): void {
    this.listener.connect();
  }

  /**
   * Commands on one connection reach Redis in the order sent, so subscribe and
   * unsubscribe calls are applied in call order without a queue of our own.
   */
  async subscribe(channel: string): Promise<void> {
    if (!this.listener.ready()) {
      throw new ProtocolError(
        "unavailable",
        `redis at ${this.hooks.url} is unreachable; ${channel} is subscribed on reconnect`,
      );
    }
    await this.listener.subscribe([channel], `subscribe ${channel}`);
  }

  async unsubscribe(channel: string): Promise<void> {
    if (this.listener.ready()) await this.listener.unsubscribe(channel);
  }

  isLive(): boolean {
    return this.listener.live;
  }

  healthCheck(): void {
    this.listener.healthCheck();
  }

  close(): Promise<void> {
    return this.listener.close();
  }
}

/** How often the slot map is read again while every shard is live, and while one is not. */
const SLOT_REFRESH_MS = 2000;
const SLOT_REFRESH_DEGRADED_MS = 200;

/** Redis Cluster: shard channels, each on a connection to the master that owns its slot. */
export class ShardedSubscriptions implements Subscriptions {
  /** Slot → "host:port" of its master; empty until the slot map was first read. */
  private owners: string[] = [];
  private readonly shards = new Map<string, { listener: Listener; channels: Set<string> }>();
  /** Channel → the master it is subscribed on. */
  private readonly route = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly cluster: Cluster,
    /** Options for a plain connection to one master (timeouts, backoff, auth, TLS). */
    private readonly nodeOptions: RedisOptions,
    private readonly hooks: SubscriptionHooks,
  ) {
    cluster.on("ready", () => void this.refresh());
  }

  connect(): void {
    this.schedule();
  }

  async subscribe(channel: string): Promise<void> {
    const owner = this.owners[keySlot(channel)];
    if (owner === undefined) {
      throw new ProtocolError(
        "unavailable",
        `the cluster's slot map is not known yet; ${channel} is subscribed once it is`,
      );
    }
    const shard = this.place(channel, owner);
    if (!shard.listener.live) {
      // A master first used: wait for its first connection (which subscribes
      // every channel placed on it by then); an unsubscribe meanwhile wins.
      await shard.listener.firstAttempt;
      if (this.route.get(channel) !== owner) return;
    }
    if (!shard.listener.live) {
      throw new ProtocolError(
        "unavailable",
        `the master ${owner} of ${channel} is unreachable; it is subscribed on reconnect`,
      );
    }
    await shard.listener.subscribe([channel], `subscribe ${channel}`);
  }

  async unsubscribe(channel: string): Promise<void> {
    const owner = this.route.get(channel);
    if (owner === undefined) return;
    this.route.delete(channel);
    const shard = this.shards.get(owner);
    shard?.channels.delete(channel);
    if (shard?.listener.ready()) await shard.listener.unsubscribe(channel);
  }

  isLive(): boolean {
    if (this.owners.length === 0) return false;
    for (const shard of this.shards.values()) if (shard.channels.size > 0 && !shard.listener.live) return false;
    return true;
  }

  healthCheck(): void {
    for (const shard of this.shards.values()) shard.listener.healthCheck();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await Promise.all([...this.shards.values()].map((shard) => shard.listener.close()));
    this.shards.clear();
  }

  /** The connections to masters, by "host:port" (for tests and metrics). */
  masters(): string[] {
    return [...this.shards.keys()];
  }

  /** Reads the slot map again, soon while a shard is down and then periodically. */
  private schedule(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(
      () => void this.refresh().finally(() => this.schedule()),
      this.isLive() ? SLOT_REFRESH_MS : SLOT_REFRESH_DEGRADED_MS,
    );
    this.timer.unref();
  }

  private refresh(): Promise<void> {
    this.refreshing ??= this.readSlots().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async readSlots(): Promise<void> {
    if (this.closed || this.cluster.status !== "ready") return;
    let reply: unknown;
    try {
      reply = await this.cluster.cluster("SLOTS");
    } catch (err) {
      this.hooks.log.debug({ err: messageOf(err) }, "reading the cluster's slot map failed");
      return;
    }
    const owners = parseSlots(reply);
    if (owners === undefined || this.closed) return;
    const changed = owners.length !== this.owners.length || owners.some((owner, slot) => owner !== this.owners[slot]);
    if (!changed) return;
    const first = this.owners.length === 0;
    this.owners = owners;
    if (!first) {
      this.hooks.log.info("the cluster's slot map changed: moving channels to their masters");
      // Publications follow at once too, rather than fail until ioredis notices.
      this.cluster.refreshSlotsCache();
    }
    const moved = new Set<string>();
    const resubscribed: Array<Promise<string | undefined>> = [];
    for (const channel of this.hooks.wanted) {
      const owner = owners[keySlot(channel)];
      const current = this.route.get(channel);
      if (owner === undefined || owner === current) continue;
      if (current !== undefined) {
        this.shards.get(current)?.channels.delete(channel);
        moved.add(current);
      }
      const shard = this.place(channel, owner);
      // A listener not live yet subscribes it once it is, and the broker is not ready meanwhile.
      if (shard.listener.live) {
        const subscribed = shard.listener.subscribe([channel], `subscribe ${channel}`).then(
          () => channel,
          () => {
            shard.listener.reconnect();
            return undefined;
          },
        );
        if (current !== undefined) resubscribed.push(subscribed);
      }
    }
    // What was published between the old master dropping a channel and the new one taking it is
    // in history: the rooms read it once the channel is live again, not at their next message.
    void Promise.all(resubscribed).then((channels) => {
      const live = channels.filter(
        (channel): channel is string => channel !== undefined && this.hooks.wanted.has(channel),
      );
      if (live.length > 0 && !this.closed) this.hooks.onResubscribed(live);
    });
    // A master that lost slots may have sent SUNSUBSCRIBE for them on its own
    // (unsolicited, which ioredis does not expect): start it afresh.
    for (const owner of moved) this.shards.get(owner)?.listener.reconnect();
    for (const [owner, shard] of this.shards) {
      if (shard.channels.size === 0 && !owners.includes(owner)) {
        this.shards.delete(owner);
        void shard.listener.close();
      }
    }
    this.hooks.onLiveChange();
  }

  /** Routes `channel` to the master `owner`, connecting to it on first use. */
  private place(channel: string, owner: string): { listener: Listener; channels: Set<string> } {
    let shard = this.shards.get(owner);
    if (shard === undefined) {
      const colon = owner.lastIndexOf(":");
      const conn = new Redis({
        ...this.nodeOptions,
        host: owner.slice(0, colon),
        port: Number(owner.slice(colon + 1)),
        autoResubscribe: false,
        connectionName: `${this.nodeOptions.connectionName ?? "crier-sub"}-${owner}`,
      });
      const channels = new Set<string>();
      const listener = new Listener(
        conn,
        `sub ${owner}`,
        () => channels,
        true,
        this.hooks,
        () => this.schedule(),
      );
      shard = { listener, channels };
      this.shards.set(owner, shard);
      listener.connect();
    }
    shard.channels.add(channel);
    this.route.set(channel, owner);
    return shard;
  }
}

/** CLUSTER SLOTS → slot → "host:port" of its master; undefined when the reply is not one. */
function parseSlots(reply: unknown): string[] | undefined {
  if (!Array.isArray(reply)) return undefined;
  const owners = new Array<string>(SLOTS);
  let covered = 0;
  for (const range of reply) {
    if (!Array.isArray(range)) return undefined;
    const [start, end, master] = range as unknown[];
    if (typeof start !== "number" || typeof end !== "number" || !Array.isArray(master)) return undefined;
    const [host, port] = master as unknown[];
    if (typeof host !== "string" || typeof port !== "number") return undefined;
    for (let slot = start; slot <= end && slot < SLOTS; slot++) {
      owners[slot] = `${host}:${port}`;
      covered++;
    }
  }
  return covered === 0 ? undefined : owners;
}
