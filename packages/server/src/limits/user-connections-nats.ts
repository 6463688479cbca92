// Connections per user in a JetStream KV bucket (`<P>_userconns`): one key per
// user (nats/connection.ts boundedToken), value = JSON {instance id: count}.
// Every change is a compare-and-set on the key's revision, so two instances
// admitting the same user at once cannot both pass the limit: the loser reads
// again and decides again. A crashed instance's count goes with its liveness,
// as presence does: a write sums only the instances whose entry is in the
// membership's nodes bucket (cluster/nats.ts) and leaves the others out of what
// it writes back. Each instance writes its absolute count, so a lost write
// heals at the next change or rewrite.

import { ProtocolError } from "crier-protocol";
import type { KV, KvEntry } from "nats";
import { isLiveNode, nodesBucket } from "../cluster/nats.js";
import { messageOf } from "../describe-error.js";
import { parseJsonObject } from "../json-object.js";
import { KeyedQueue } from "../keyed-queue.js";
import {
  apiCode,
  boundedToken,
  type NatsLink,
  NO_MESSAGE,
  natsNames,
  WRONG_LAST_SEQUENCE,
} from "../nats/connection.js";
import { DEFAULT_PREFIX } from "../redis/connection.js";
import { LocalCounts, type UserConnections } from "./user-connections.js";

export interface NatsUserConnectionsOptions {
  link: NatsLink;
  /** This instance's id (its field in every user's counts). */
  nodeId: string;
  /** Prefix shared with the broker's (default "crier:"); scopes the bucket. */
  prefix?: string;
  /** The membership's node timeout: the TTL of the nodes bucket liveness is read from (default 10000). */
  nodeTimeoutMs?: number;
  /** A user's key expires this long after its last write (default 1 h); this instance rewrites its own every third of it. */
  ttlMs?: number;
}

/** Writes lost to other instances' writes of the same user, before giving up with `unavailable`. */
const MAX_ATTEMPTS = 50;

type Counts = Record<string, number>;

export class NatsUserConnections implements UserConnections {
  private readonly link: NatsLink;
  private readonly nodeId: string;
  private readonly prefix: string;
  private readonly nodeTimeoutMs: number;
  private readonly ttlMs: number;
  private readonly counts = new LocalCounts();
  /** Users whose count may be wrong in NATS (a write failed): written again once it is back. */
  private readonly unsure = new Set<string>();
  /** Per user, the tail of this instance's changes: one at a time, so they do not contend with each other. */
  private readonly queue = new KeyedQueue();
  private buckets: { counts: KV; nodes: KV } | undefined;
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(options: NatsUserConnectionsOptions) {
    this.link = options.link;
    this.nodeId = options.nodeId;
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.nodeTimeoutMs = options.nodeTimeoutMs ?? 10_000;
    this.ttlMs = options.ttlMs ?? 3_600_000;
    // Keys of users with long-lived connections must not expire under them.
    this.timer = setInterval(() => this.rewriteQuietly(), Math.max(1, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
    // NATS may have restarted without its store: write this instance's counts again.
    this.link.onChange((up) => {
      if (!up || this.buckets === undefined) return;
      this.buckets = undefined;
      this.rewriteQuietly();
    });
  }

  async start(): Promise<void> {
    await this.link.start();
    await this.open();
  }

  acquire(user: string, max: number): Promise<boolean> {
    return this.queue
      .run(user, async () => {
        const admitted = await this.write(user, (others) => {
          const next = this.counts.get(user) + 1;
          return others + next > max ? undefined : next;
        });
        if (admitted) this.counts.add(user, 1);
        return admitted;
      })
      .catch((err: unknown) => {
        throw this.link.failure(`counting connections of user ${user}`, err);
      });
  }

  release(user: string): void {
    this.counts.add(user, -1);
    this.writeQuietly(user);
  }

  async rewrite(): Promise<void> {
    const users = new Set([...[...this.counts.entries()].map(([user]) => user), ...this.unsure]);
    const writes = [...users].map((user) => this.queue.run(user, () => this.writeOwn(user)));
    const failed = (await Promise.allSettled(writes)).find((result) => result.status === "rejected");
    if (failed !== undefined) throw this.link.failure("writing per-user connection counts", failed.reason);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.link.close();
  }

  private writeQuietly(user: string): void {
    this.queue
      .run(user, () => this.writeOwn(user))
      .catch((err: unknown) => {
        // Written again when NATS is back; meanwhile the user may be refused early, never let past.
        this.unsure.add(user);
        this.link.log.debug({ err: messageOf(err), user }, "could not write a per-user connection count");
      });
  }

  private rewriteQuietly(): void {
    if (!this.link.isReady() || this.closed) return;
    this.rewrite().catch((err: unknown) => {
      this.link.log.warn({ err: messageOf(err) }, "could not write this instance's per-user connection counts");
    });
  }

  /** Writes this instance's count of `user` as it is now. */
  private async writeOwn(user: string): Promise<void> {
    await this.write(user, () => this.counts.get(user));
    this.unsure.delete(user);
  }

  /**
   * Reads `user`'s counts, asks `decide` for this instance's new count given
   * the live others' total (undefined: refuse), and writes it back only if the
   * key is still at the revision read, with the gone instances left out;
   * another instance writing first means reading and deciding again. Resolves
   * to whether `decide` accepted.
   */
  private async write(user: string, decide: (others: number) => number | undefined): Promise<boolean> {
    const { counts, nodes } = await this.open();
    const key = boundedToken(user);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await counts.get(key);
      const stored = entry !== null && entry.operation === "PUT" ? parseCounts(entry.string()) : {};
      const others = Object.entries(stored).filter(([node]) => node !== this.nodeId);
      const live = await Promise.all(others.map(([node]) => isLiveNode(nodes, node)));
      const next: Counts = {};
      let total = 0;
      for (const [i, [node, count]] of others.entries()) {
        if (live[i] !== true) continue;
        next[node] = count;
        total += count;
      }
      const mine = decide(total);
      if (mine === undefined) return false;
      if (mine > 0) next[this.nodeId] = mine;
      if (await this.store(counts, key, entry, next)) return true;
    }
    throw new ProtocolError("unavailable", `${MAX_ATTEMPTS} writes of user ${user}'s count lost to other instances`);
  }

  /**
   * Writes `next` over `entry` (the revision read); an empty count deletes the
   * key's message (no delete marker is left behind). False when the key changed since.
   */
  private async store(counts: KV, key: string, entry: KvEntry | null, next: Counts): Promise<boolean> {
    try {
      if (Object.keys(next).length > 0) {
        await counts.put(key, JSON.stringify(next), { previousSeq: entry?.revision ?? 0 });
      } else if (entry !== null) {
        const { manager } = await this.link.jetstream();
        await manager.streams.deleteMessage(
          `KV_${natsNames(this.prefix).userConnectionsBucket}`,
          entry.revision,
          false,
        );
      }
      return true;
    } catch (err) {
      const code = apiCode(err);
      if (code === WRONG_LAST_SEQUENCE || code === NO_MESSAGE || isGone(err)) return false;
      throw err;
    }
  }

  private async open(): Promise<{ counts: KV; nodes: KV }> {
    if (this.closed) throw new ProtocolError("unavailable", "the per-user connection counts are closed");
    if (this.buckets === undefined) {
      const conn = this.link.live();
      const counts = await conn
        .jetstream({ timeout: this.link.timeoutMs })
        .views.kv(natsNames(this.prefix).userConnectionsBucket, { ttl: this.ttlMs, history: 1 });
      const nodes = await nodesBucket(this.link, this.prefix, this.nodeTimeoutMs);
      this.buckets = { counts, nodes };
    }
    this.link.live();
    return this.buckets;
  }
}

/** A stored value's counts; anything that is not a count is dropped (written back without it). */
function parseCounts(text: string): Counts {
  const counts: Counts = {};
  for (const [node, count] of Object.entries(parseJsonObject(text) ?? {})) {
    if (typeof count === "number" && Number.isInteger(count) && count > 0) counts[node] = count;
  }
  return counts;
}

/** A message delete that found the message gone (the server's text; its API code varies by version). */
function isGone(err: unknown): boolean {
  return /no message found/i.test(messageOf(err));
}
