// Sweeping an instance that is gone, on NATS (docs/protocol.md "An instance
// crashes"): every store looks now and then through the instances with an
// index key for ones without a membership entry; one claims each (its lock
// key, created only if absent, taken over only from a sweeper that is gone
// too) and takes its entries out room by room, each in three steps:
//
// 1. a tombstone remembering the member and the entry's revision;
// 2. the entry's delete at that revision: the claim, refused if the instance
//    wrote the entry again meanwhile (it is back; nothing is announced);
// 3. the leave, through the events stream under an id of the entry and its
//    revision (nats-bucket.ts), so however often it is published (a sweeper
//    taking over from one that died, the instance coming back) it goes out
//    once; then the tombstone is marked sent.
//
// The instance, back, rewrites its entries at the revision it last wrote:
// that fails exactly when a sweep claimed the entry, and then it finds the
// tombstone and announces the join after the leave (nats.ts).

import type { KV, KvEntry } from "nats";
import type { Logger } from "pino";
import { isLiveNode } from "../cluster/nats.js";
import { messageOf } from "../describe-error.js";
import { parseJsonObject } from "../json-object.js";
import { decodeToken } from "../nats/connection.js";
import {
  entryKey,
  indexKey,
  lockKey,
  lostRace,
  type PresenceBucket,
  parseEntry,
  parseKey,
  parseTombstone,
  type Tombstone,
  tombKey,
} from "./nats-bucket.js";
import { memberOf, type PresenceEntry } from "./presence.js";

export interface NatsSweeperOptions {
  /** The presence bucket and the membership's nodes bucket, on the live connection. */
  open(): Promise<{ bucket: PresenceBucket; nodes: KV }>;
  /** This store's name on the claims it takes: its instance's id, so others can tell whether it is still live. */
  sweeper: string;
  /** The channel a room's leaves go to, "" where the room announces none. */
  channel(room: string): string;
  log: Logger;
}

/** Entries of one room taken out at once: bounds the requests in flight in a big room. */
const BATCH = 64;

/** A room's keys of the swept instance, by client. */
interface RoomKeys {
  entries: string[];
  tombs: string[];
}

export class NatsSweeper {
  private readonly options: NatsSweeperOptions;

  constructor(options: NatsSweeperOptions) {
    this.options = options;
  }

  /** Finds the instances with entries that are no longer live and sweeps each one this store manages to claim. */
  async sweepDead(selves: ReadonlySet<string>): Promise<number> {
    const { bucket, nodes } = await this.options.open();
    let removed = 0;
    for (const node of await bucket.indexedNodes()) {
      if (selves.has(node) || (await isLiveNode(nodes, node))) continue;
      removed += await this.sweepNode(node);
    }
    return removed;
  }

  /**
   * Claims instance `node` and takes its entries out, announcing their leaves.
   * An earlier process of this instance (`earlier`) is swept without a claim
   * and whether or not its membership entry has expired yet: none of its
   * members is connected any more, and nobody else writes its entries again.
   */
  async sweepNode(node: string, earlier = false): Promise<number> {
    const { bucket, nodes } = await this.options.open();
    const lock = earlier ? 0 : await this.claim(bucket, nodes, node);
    if (lock === undefined) return 0;
    try {
      return await this.sweepRooms(bucket, nodes, node, earlier);
    } finally {
      if (lock > 0) {
        await bucket.deleteRevision(lock, "sweeps").catch((err: unknown) => {
          this.options.log.warn({ err: messageOf(err), node }, "could not release a sweep claim; it is taken over");
        });
      }
    }
  }

  private async sweepRooms(bucket: PresenceBucket, nodes: KV, node: string, earlier: boolean): Promise<number> {
    const index = await bucket.sweeps.get(indexKey(node));
    const rooms = new Map<string, RoomKeys>();
    const [entryKeys, tombKeys] = await Promise.all([bucket.nodeEntries(node), bucket.nodeTombs(node)]);
    for (const key of [...entryKeys, ...tombKeys]) {
      const parsed = parseKey(key);
      if (parsed === undefined || parsed.kind === "index") continue;
      const keys = rooms.get(parsed.room) ?? { entries: [], tombs: [] };
      (parsed.kind === "entry" ? keys.entries : keys.tombs).push(key);
      rooms.set(parsed.room, keys);
    }
    let removed = 0;
    for (const [token, keys] of rooms) {
      const room = decodeToken(token);
      const [entries, tombs] = await Promise.all([gets(bucket.kv, keys.entries), gets(bucket.kv, keys.tombs)]);
      // Read before deciding: an entry written again once the instance is back is refused by the claim.
      if (!earlier && (await isLiveNode(nodes, node))) {
        this.options.log.info({ node }, "the instance came back while its presence entries were swept: stopped");
        return removed;
      }
      const channel = this.options.channel(room);
      const tombOf = new Map(tombs.map((tomb) => [tomb.key, tomb]));
      for (let i = 0; i < entries.length; i += BATCH) {
        const batch = entries.slice(i, i + BATCH).map(async (entry) => {
          const stored = parseEntry(entry.string());
          if (stored === undefined) {
            await bucket.deleteRevision(entry.revision);
            return 0;
          }
          return this.sweepEntry(bucket, room, channel, entry, stored, tombOf.get(tombKey(room, node, stored.client)));
        });
        for (const count of await Promise.all(batch)) removed += count;
      }
      // Tombstones whose leave is not out: a sweeper died between its claim and the leave.
      const swept = new Set(entries.map((entry) => parseEntry(entry.string())?.client));
      for (const tomb of tombs) {
        const known = parseTombstone(tomb.string());
        if (known === undefined || known.sent || swept.has(known.member.client)) continue;
        await this.leave(bucket, room, channel, node, known);
        await this.markSent(bucket, tomb.key, known, tomb.revision);
      }
    }
    // Indexed no more once nothing is left, unless the instance wrote its index again since.
    if (index !== null && (await bucket.nodeEntries(node)).length === 0) {
      await bucket.deleteRevision(index.revision, "sweeps");
    }
    if (removed > 0)
      this.options.log.info({ node, removed }, "removed the presence entries of an instance that is gone");
    return removed;
  }

  /** Takes one entry out (tombstone, claim, leave); 1 if this sweep removed it. */
  private async sweepEntry(
    bucket: PresenceBucket,
    room: string,
    channel: string,
    entry: KvEntry,
    stored: PresenceEntry,
    tomb: KvEntry | undefined,
  ): Promise<number> {
    const member = memberOf(stored);
    const key = tombKey(room, stored.node, stored.client);
    const known = tomb === undefined ? undefined : parseTombstone(tomb.string());
    const marked: Tombstone = { member, rev: entry.revision, sent: false };
    let tombRev: number;
    let ours = false;
    if (tomb !== undefined && known?.rev === entry.revision) {
      // Left by a sweeper that died before its claim: carried on from there.
      tombRev = tomb.revision;
    } else {
      try {
        tombRev = await bucket.kv.put(key, JSON.stringify(marked), { previousSeq: tomb?.revision ?? 0 });
        ours = true;
      } catch (err) {
        if (lostRace(err)) return 0; // another sweep is on it
        throw err;
      }
    }
    if (!(await bucket.deleteRevision(entry.revision))) {
      // Written again (the instance is back) or removed by it since it was read: not this sweep's to announce.
      if (ours) await bucket.deleteRevision(tombRev);
      return 0;
    }
    await this.leave(bucket, room, channel, stored.node, marked);
    await this.markSent(bucket, key, marked, tombRev);
    return 1;
  }

  private async leave(
    bucket: PresenceBucket,
    room: string,
    channel: string,
    node: string,
    tomb: Tombstone,
  ): Promise<void> {
    if (channel === "") return;
    const entry = { ...tomb.member, node };
    await bucket.announce(
      channel,
      { kind: "leave", room, client: tomb.member.client, node, data: JSON.stringify(tomb.member) },
      leaveId(entryKey(room, entry), tomb.rev),
    );
  }

  private async markSent(bucket: PresenceBucket, key: string, tomb: Tombstone, revision: number): Promise<void> {
    await bucket.kv.update(key, JSON.stringify({ ...tomb, sent: true }), revision).catch((err: unknown) => {
      // Taken by the instance, back (it announced the join), or by another sweep.
      if (!lostRace(err)) throw err;
    });
  }

  /** The claim's revision, or undefined when a live sweeper holds it. */
  private async claim(bucket: PresenceBucket, nodes: KV, node: string): Promise<number | undefined> {
    const key = lockKey(node);
    const value = JSON.stringify({ sweeper: this.options.sweeper });
    try {
      return await bucket.sweeps.put(key, value, { previousSeq: 0 });
    } catch (err) {
      if (!lostRace(err)) throw err;
    }
    const held = await bucket.sweeps.get(key);
    if (held === null || held.operation !== "PUT") return undefined;
    const holder = parseJsonObject(held.string())?.sweeper;
    if (typeof holder === "string" && holder !== this.options.sweeper && (await isLiveNode(nodes, holder))) {
      return undefined;
    }
    try {
      return await bucket.sweeps.update(key, value, held.revision);
    } catch (err) {
      if (lostRace(err)) return undefined;
      throw err;
    }
  }
}

/** The events stream's id of a swept entry's leave: the same for every sweeper, and for the instance coming back. */
export function leaveId(entryKey: string, revision: number): string {
  return `leave ${entryKey} ${revision}`;
}

/** The id of the join that follows it. */
export function joinId(entryKey: string, revision: number): string {
  return `join ${entryKey} ${revision}`;
}

async function gets(kv: KV, keys: string[]): Promise<KvEntry[]> {
  const entries = await Promise.all(keys.map((key) => kv.get(key)));
  return entries.filter((entry): entry is KvEntry => entry !== null && entry.operation === "PUT");
}
