// Presence in a JetStream KV bucket, shared by every instance: one key per
// member, `<room>.<client>` (each part encoded, nats/connection.ts), value =
// JSON {user, client, info, node}. As with Redis, an entry lives as long as
// its instance: list() keeps the entries whose node still has its entry in the
// membership bucket (cluster/nats.ts) and deletes the others, each delete
// conditional on the entry's revision, so an entry written again meanwhile (the
// node came back) is never pruned. The bucket's TTL is a safety net against
// entries nobody lists again; this instance rewrites its own well within it.

import { type Member, ProtocolError } from "crier-protocol";
import type { KV, KvEntry } from "nats";
import { nodesBucket } from "../cluster/nats.js";
import { messageOf } from "../describe-error.js";
import { parseJsonObject } from "../json-object.js";
import { bucketKeys, encodeToken, type NatsLink, natsNames } from "../nats/connection.js";
import { DEFAULT_PREFIX } from "../redis/connection.js";
import { compareMembers, type PresenceEntry, type PresenceStats, type PresenceStore } from "./presence.js";
import { drop, put, type Rooms } from "./rooms.js";

export interface NatsPresenceOptions {
  link: NatsLink;
  /** Prefix shared with the broker's (default "crier:"); scopes the buckets. */
  prefix?: string;
  /** The membership's node timeout: the TTL of the nodes bucket this store reads liveness from (default 10000). */
  nodeTimeoutMs?: number;
  /** An entry not written again for this long expires (default 1 h); this instance rewrites its own every third of it. */
  ttlMs?: number;
}

export class NatsPresence implements PresenceStore {
  private readonly link: NatsLink;
  private readonly prefix: string;
  private readonly nodeTimeoutMs: number;
  private readonly ttlMs: number;
  private buckets: { members: KV; nodes: KV } | undefined;
  /** Entries this instance added and did not remove: rewritten after a reconnect or a rejoin. */
  private readonly own: Rooms = new Map();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(options: NatsPresenceOptions) {
    this.link = options.link;
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.nodeTimeoutMs = options.nodeTimeoutMs ?? 10_000;
    this.ttlMs = options.ttlMs ?? 3_600_000;
    this.timer = setInterval(() => this.refresh(), Math.max(1, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
    // NATS may have restarted empty: write this instance's members again.
    this.link.onChange((up) => {
      if (!up || this.buckets === undefined) return;
      this.buckets = undefined;
      this.refresh();
    });
  }

  async start(timeoutMs = 5000): Promise<void> {
    await this.link.start(timeoutMs);
    await this.open();
  }

  isReady(): boolean {
    return this.link.isReady() && !this.closed;
  }

  async add(room: string, entry: PresenceEntry): Promise<void> {
    put(this.own, room, entry);
    try {
      const { members } = await this.open();
      await members.put(this.key(room, entry.client), JSON.stringify(entry));
    } catch (err) {
      if (this.own.get(room)?.get(entry.client) === entry) drop(this.own, room, entry.client);
      throw this.link.failure(`presence add in ${room}`, err);
    }
  }

  async remove(room: string, client: string): Promise<void> {
    drop(this.own, room, client);
    try {
      const { members } = await this.open();
      await members.delete(this.key(room, client));
    } catch (err) {
      throw this.link.failure(`presence remove in ${room}`, err);
    }
  }

  /** Counted from the listing: KV keeps no counters (O(members), unlike Redis's). */
  async stats(room: string): Promise<PresenceStats> {
    const members = await this.list(room);
    return { clients: members.length, users: new Set(members.map((member) => member.user)).size };
  }

  /**
   * Nothing to sweep: a dead instance's entries are pruned whenever a room is
   * listed (its liveness key expired). Its members' leaves are not announced
   * on NATS (docs/scaling.md).
   */
  async sweep(): Promise<number> {
    return 0;
  }

  async list(room: string): Promise<Member[]> {
    try {
      const { members, nodes } = await this.open();
      const keys = await bucketKeys(this.link, natsNames(this.prefix).presenceBucket, `${encodeToken(room)}.*`);
      const entries = await Promise.all(keys.map((key) => members.get(key)));
      const live = new Map<string, Promise<boolean>>();
      const isLive = (node: string): Promise<boolean> => {
        let known = live.get(node);
        if (known === undefined) {
          known = nodes.get(encodeToken(node)).then((e) => e !== null && e.operation === "PUT");
          live.set(node, known);
        }
        return known;
      };
      const kept = await Promise.all(entries.map(async (entry) => this.keep(members, entry, isLive)));
      return kept.filter((member) => member !== undefined).sort(compareMembers);
    } catch (err) {
      throw this.link.failure(`presence list of ${room}`, err);
    }
  }

  async rewrite(): Promise<void> {
    const { members } = await this.open().catch((err: unknown) => {
      throw this.link.failure("presence rewrite", err);
    });
    const writes: Promise<unknown>[] = [];
    for (const [room, entries] of this.own) {
      for (const entry of entries.values())
        writes.push(members.put(this.key(room, entry.client), JSON.stringify(entry)));
    }
    const failed = (await Promise.allSettled(writes)).find((result) => result.status === "rejected");
    if (failed !== undefined) throw this.link.failure("presence rewrite", failed.reason);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.link.close();
  }

  /** The member of a live node's entry; a gone node's entry (or a malformed one) is deleted, if unchanged since read. */
  private async keep(
    members: KV,
    entry: KvEntry | null,
    isLive: (node: string) => Promise<boolean>,
  ): Promise<Member | undefined> {
    if (entry === null || entry.operation !== "PUT") return undefined;
    const parsed = parseJsonObject(entry.string());
    const node = parsed?.node;
    if (parsed !== undefined && typeof node === "string" && (await isLive(node))) {
      if (typeof parsed.user === "string" && typeof parsed.client === "string") {
        const member: Member = { user: parsed.user, client: parsed.client };
        const info = parsed.info;
        if (typeof info === "object" && info !== null && !Array.isArray(info)) member.info = info as Member["info"];
        return member;
      }
    }
    await members.delete(entry.key, { previousSeq: entry.revision }).catch((err: unknown) => {
      // Written again since it was read: it stays.
      this.link.log.debug({ err: messageOf(err), key: entry.key }, "presence prune skipped");
    });
    return undefined;
  }

  private async open(): Promise<{ members: KV; nodes: KV }> {
    if (this.closed) throw new ProtocolError("unavailable", "the presence store is closed");
    if (this.buckets === undefined) {
      const conn = this.link.live();
      const members = await conn
        .jetstream({ timeout: this.link.timeoutMs })
        .views.kv(natsNames(this.prefix).presenceBucket, { ttl: this.ttlMs, history: 1 });
      const nodes = await nodesBucket(this.link, this.prefix, this.nodeTimeoutMs);
      this.buckets = { members, nodes };
    }
    this.link.live();
    return this.buckets;
  }

  private key(room: string, client: string): string {
    return `${encodeToken(room)}.${encodeToken(client)}`;
  }

  private refresh(): void {
    if (!this.isReady() || this.own.size === 0) return;
    this.rewrite().catch((err: unknown) => {
      this.link.log.warn({ err: messageOf(err) }, "could not write presence entries again");
    });
  }
}
