// Presence in NATS, shared by every instance: the KV bucket and the events
// stream of nats-bucket.ts. As with Redis, an entry lives as long as its
// instance does: list() hides the entries of instances without a membership
// entry (cluster/nats.ts), and every store sweeps now and then for instances
// that are gone (nats-sweep.ts), which takes their entries out and announces
// each leave once. Counts are the room's keys, so they agree with the entries
// before and after a sweep. The bucket's TTL is a safety net against entries
// nobody sweeps; this instance rewrites its own well within it.

import { type Member, ProtocolError } from "crier-protocol";
import type { KV } from "nats";
import { isLiveNode, nodesBucket } from "../cluster/nats.js";
import { messageOf } from "../describe-error.js";
import { KeyedQueue } from "../keyed-queue.js";
import { decodeToken, type NatsLink } from "../nats/connection.js";
import { DEFAULT_PREFIX } from "../redis/connection.js";
import {
  entryKey,
  entryText,
  indexKey,
  lostRace,
  PresenceBucket,
  parseEntry,
  parseKey,
  parseTombstone,
  tombKey,
} from "./nats-bucket.js";
import { joinId, leaveId, NatsSweeper } from "./nats-sweep.js";
import { compareMembers, memberOf, type PresenceEntry, type PresenceStats, type PresenceStore } from "./presence.js";
import { drop, put, type Rooms } from "./rooms.js";

export interface NatsPresenceOptions {
  link: NatsLink;
  /** Prefix shared with the broker's (default "crier:"); scopes the bucket and the events stream. */
  prefix?: string;
  /** The membership's node timeout: the TTL of the nodes bucket this store reads liveness from (default 10000). */
  nodeTimeoutMs?: number;
  /** An entry not written again for this long expires (default 1 h); this instance rewrites its own every third of it. */
  ttlMs?: number;
  /**
   * This instance's id. At start, entries left under it by an earlier process
   * with the same id are swept, their leaves announced; it also names this
   * store on its sweep claims.
   */
  nodeId?: string;
  /** The broker channel of a room, where a sweep announces leaves and a rewrite joins; without it neither is. */
  channel?: (room: string) => string;
  /** Whether `room` announces joins and leaves (its namespace's joinLeave; default: every room). */
  announces?: (room: string) => boolean;
  /** How often to look for instances that are gone and sweep them (default 3000; 0: only when sweep() is called). */
  sweepMs?: number;
}

interface Opened {
  bucket: PresenceBucket;
  nodes: KV;
}

export class NatsPresence implements PresenceStore {
  private readonly link: NatsLink;
  private readonly prefix: string;
  private readonly nodeTimeoutMs: number;
  private readonly ttlMs: number;
  private readonly nodeId: string | undefined;
  private readonly channel: ((room: string) => string) | undefined;
  private readonly announces: (room: string) => boolean;
  private readonly sweeper: NatsSweeper;
  private opened: Opened | undefined;
  /** Entries this instance added and did not remove: rewritten after a reconnect or a rejoin. */
  private readonly own: Rooms = new Map();
  /** The revision this store last wrote of each of its entries: a rewrite at it fails exactly when a sweep took the entry. */
  private readonly revisions = new Map<string, number>();
  /** Keys that may still hold an entry this store no longer has (a write or a delete failed): deleted once NATS answers. */
  private readonly unsure = new Set<string>();
  /** The instances whose index key this store wrote since it last (re)opened the bucket or rewrote. */
  private readonly indexed = new Set<string>();
  /** The instances this store adds entries for (in production, its own): never swept from here. */
  private readonly selves = new Set<string>();
  /** Per member, its writes one at a time: a rewrite never puts back an entry removed after it began. */
  private readonly queue = new KeyedQueue();
  private readonly timers: NodeJS.Timeout[] = [];
  private sweeping: Promise<number> | undefined;
  private closed = false;

  constructor(options: NatsPresenceOptions) {
    this.link = options.link;
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.nodeTimeoutMs = options.nodeTimeoutMs ?? 10_000;
    this.ttlMs = options.ttlMs ?? 3_600_000;
    this.nodeId = options.nodeId;
    if (options.nodeId !== undefined) this.selves.add(options.nodeId);
    this.channel = options.channel;
    this.announces = options.announces ?? (() => true);
    this.sweeper = new NatsSweeper({
      open: () => this.open(),
      sweeper: options.nodeId ?? `store-${Math.random().toString(36).slice(2)}`,
      channel: (room) => this.announcedOn(room),
      log: this.link.log,
    });
    this.every(Math.max(1, Math.floor(this.ttlMs / 3)), () => this.refresh());
    const sweepMs = options.sweepMs ?? 3000;
    if (sweepMs > 0) this.every(sweepMs, () => this.sweepSoon());
    // NATS may have restarted empty: write this instance's members again.
    this.link.onChange((up) => {
      if (!up || this.opened === undefined) return;
      this.opened = undefined;
      this.refresh();
    });
  }

  /** Resolves once NATS answers and what an earlier process of this node id left is swept. */
  async start(timeoutMs = 5000): Promise<void> {
    await this.link.start(timeoutMs);
    await this.open();
    if (this.nodeId !== undefined) await this.sweeper.sweepNode(this.nodeId, true);
  }

  isReady(): boolean {
    return this.link.isReady() && !this.closed;
  }

  async add(room: string, entry: PresenceEntry): Promise<void> {
    const previous = this.own.get(room)?.get(entry.client);
    const key = entryKey(room, entry);
    this.selves.add(entry.node);
    put(this.own, room, entry);
    try {
      await this.queue.run(memberKey(room, entry.client), async () => {
        const { bucket } = await this.open();
        // The same client under another user or instance is another key: the old one goes.
        if (previous !== undefined && entryKey(room, previous) !== key)
          await this.deleteEntry(bucket, entryKey(room, previous));
        await this.index(bucket, entry.node);
        this.revisions.set(key, await bucket.kv.put(key, entryText(entry)));
        this.unsure.delete(key);
      });
    } catch (err) {
      // Not added as far as the caller knows; if the write did land, the next rewrite takes it out.
      if (this.own.get(room)?.get(entry.client) === entry) {
        drop(this.own, room, entry.client);
        this.unsure.add(key);
      }
      throw this.link.failure(`presence add in ${room}`, err);
    }
  }

  async remove(room: string, client: string): Promise<void> {
    const previous = this.own.get(room)?.get(client);
    drop(this.own, room, client);
    try {
      await this.queue.run(memberKey(room, client), async () => {
        const { bucket } = await this.open();
        const keys = previous === undefined ? await bucket.roomEntries(room, client) : [entryKey(room, previous)];
        for (const key of keys) await this.deleteEntry(bucket, key);
      });
    } catch (err) {
      if (previous !== undefined && !this.own.get(room)?.has(client)) this.unsure.add(entryKey(room, previous));
      throw this.link.failure(`presence remove in ${room}`, err);
    }
  }

  async list(room: string): Promise<Member[]> {
    try {
      const { bucket, nodes } = await this.open();
      const entries = await Promise.all((await bucket.roomEntries(room)).map((key) => bucket.kv.get(key)));
      const live = new Map<string, Promise<boolean>>();
      const members: Member[] = [];
      for (const entry of entries) {
        if (entry === null || entry.operation !== "PUT") continue;
        const stored = parseEntry(entry.string());
        if (stored === undefined) {
          this.link.log.warn({ entry: entry.string().slice(0, 200) }, "dropped a malformed presence entry");
          await bucket.deleteRevision(entry.revision);
          continue;
        }
        let isLive = live.get(stored.node);
        if (isLive === undefined) {
          isLive = isLiveNode(nodes, stored.node);
          live.set(stored.node, isLive);
        }
        // An instance that is gone: hidden, not deleted; deleting is the sweep's, which announces the leaves.
        if (await isLive) members.push(memberOf(stored));
      }
      return members.sort(compareMembers);
    } catch (err) {
      throw this.link.failure(`presence list of ${room}`, err);
    }
  }

  /** One request: the room's keys are its entries, and each key carries its user. */
  async stats(room: string): Promise<PresenceStats> {
    try {
      const { bucket } = await this.open();
      const keys = await bucket.roomEntries(room);
      const users = new Set(
        keys.map((key) => {
          const parsed = parseKey(key);
          return parsed?.kind === "entry" ? parsed.user : key;
        }),
      );
      return { clients: keys.length, users: users.size };
    } catch (err) {
      throw this.link.failure(`presence stats of ${room}`, err);
    }
  }

  /** One sweep at a time per store: the timer's and an explicit call share it. */
  sweep(): Promise<number> {
    this.sweeping ??= this.sweeper
      .sweepDead(this.selves)
      .catch((err: unknown) => {
        throw this.link.failure("presence sweep", err);
      })
      .finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  async rewrite(): Promise<void> {
    let bucket: PresenceBucket;
    try {
      bucket = (await this.open()).bucket;
    } catch (err) {
      throw this.link.failure("presence rewrite", err);
    }
    this.indexed.clear();
    const writes: Promise<unknown>[] = [];
    for (const key of this.unsure) {
      const parsed = parseKey(key);
      if (parsed?.kind !== "entry") continue;
      // Removals that may not have landed (and adds that may have): a member this store has now is written below.
      const member = memberKey(decodeToken(parsed.room), decodeToken(parsed.client));
      writes.push(this.queue.run(member, () => this.deleteEntry(bucket, key)));
    }
    for (const [room, entries] of this.own) {
      for (const entry of entries.values()) {
        writes.push(this.queue.run(memberKey(room, entry.client), () => this.writeAgain(bucket, room, entry)));
      }
    }
    const failed = (await Promise.allSettled(writes)).find((result) => result.status === "rejected");
    if (failed !== undefined) throw this.link.failure("presence rewrite", failed.reason);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    await this.sweeping?.catch(() => 0);
    await this.link.close();
  }

  /**
   * Writes `entry` again at the revision this store last wrote. That fails
   * only when a sweep took it out while this instance was out of the cluster:
   * then the entry is written anew and, where the room announces, its leave
   * (if the sweep did not get to announce it) and its join go out, in order.
   */
  private async writeAgain(bucket: PresenceBucket, room: string, entry: PresenceEntry): Promise<void> {
    if (this.own.get(room)?.get(entry.client) !== entry) return; // removed or replaced since the rewrite began
    const key = entryKey(room, entry);
    await this.index(bucket, entry.node);
    const known = this.revisions.get(key);
    if (known !== undefined) {
      try {
        this.revisions.set(key, await bucket.kv.update(key, entryText(entry), known));
        return;
      } catch (err) {
        if (!lostRace(err)) throw err;
      }
    }
    this.revisions.set(key, await bucket.kv.put(key, entryText(entry)));
    const tomb = await bucket.kv.get(tombKey(room, entry.node, entry.client));
    if (tomb === null || tomb.operation !== "PUT") return;
    const stone = parseTombstone(tomb.string());
    // A tombstone of an older revision than this store's is a claim that failed: nothing was announced.
    if (stone !== undefined && (known === undefined || stone.rev === known)) {
      const channel = this.announcedOn(room);
      if (channel !== "") {
        const data = JSON.stringify(memberOf(entry));
        const envelope = { room, client: entry.client, node: entry.node, data };
        if (!stone.sent) await bucket.announce(channel, { kind: "leave", ...envelope }, leaveId(key, stone.rev));
        await bucket.announce(channel, { kind: "join", ...envelope }, joinId(key, stone.rev));
      }
    }
    await bucket.deleteRevision(tomb.revision);
  }

  private async deleteEntry(bucket: PresenceBucket, key: string): Promise<void> {
    await bucket.deleteKey(key);
    this.revisions.delete(key);
    this.unsure.delete(key);
  }

  /** Writes `node`'s index key once per opening: a sweep finds the instance through it. */
  private async index(bucket: PresenceBucket, node: string): Promise<void> {
    if (this.indexed.has(node)) return;
    await bucket.sweeps.put(indexKey(node), JSON.stringify({ node }));
    this.indexed.add(node);
  }

  private async open(): Promise<Opened> {
    if (this.closed) throw new ProtocolError("unavailable", "the presence store is closed");
    if (this.opened === undefined) {
      const bucket = await PresenceBucket.open(this.link, this.prefix, this.ttlMs);
      const nodes = await nodesBucket(this.link, this.prefix, this.nodeTimeoutMs);
      this.opened = { bucket, nodes };
      this.indexed.clear();
    }
    this.link.live();
    return this.opened;
  }

  /** The channel where `room`'s joins and leaves go, or "" where none are announced. */
  private announcedOn(room: string): string {
    return this.channel !== undefined && this.announces(room) ? this.channel(room) : "";
  }

  private every(ms: number, run: () => void): void {
    const timer = setInterval(run, ms);
    timer.unref();
    this.timers.push(timer);
  }

  private sweepSoon(): void {
    if (!this.isReady()) return;
    this.sweep().catch((err: unknown) => this.link.log.warn({ err: messageOf(err) }, "presence sweep failed"));
  }

  private refresh(): void {
    if (!this.isReady() || (this.own.size === 0 && this.unsure.size === 0)) return;
    this.rewrite().catch((err: unknown) => {
      this.link.log.warn({ err: messageOf(err) }, "could not write presence entries again");
    });
  }
}

/** Room names never contain a space (docs/protocol.md), so this key is unambiguous. */
function memberKey(room: string, client: string): string {
  return `${room} ${client}`;
}
