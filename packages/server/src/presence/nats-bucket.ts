// How presence is laid out in NATS, shared by the store (nats.ts) and the
// sweep of dead instances (nats-sweep.ts). A KV bucket `<P>_presence`:
//
//   m.<room>.<node>.<user>.<client>  a member's entry: JSON {user, client, info?, node}
//   g.<room>.<node>.<client>         a tombstone: a member a sweep took out, {member, rev, sent}
//
// and a small one, `<P>_presence_sweeps`, that every instance reads every
// heartbeat (so that read never scans the members' keys):
//
//   n.<node>                         instance <node> has (or had) entries: what a sweep looks through
//   s.<node>                         the claim on sweeping instance <node>: {sweeper}
//
// (each part encoded, nats/connection.ts; the user bounded in length). Entries
// are deleted by deleting their message, never with a delete marker, so a
// room's keys are exactly its entries, and counting them needs no value. A
// delete by revision only succeeds while the key still holds that revision:
// the compare-and-delete a sweep claims an entry with.
//
// Beside it, the stream `<P>_presence_events` carries what a sweep or a
// rewrite announces (leaves, joins again) and republishes each message it
// stores on the room's live subject. It drops a message whose id it stored in
// the last two minutes, so a leave that two instances publish (a survivor, and
// the instance coming back; or a survivor taking over from one that died) goes
// out once, and before the join published after it.

import { createHash } from "node:crypto";
import type { Member } from "crier-protocol";
import {
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type KV,
  NatsError,
  RetentionPolicy,
  StorageType,
} from "nats";
import { type Envelope, encodeEnvelope } from "../broker/envelope.js";
import { messageOf } from "../describe-error.js";
import { parseJsonObject } from "../json-object.js";
import {
  apiCode,
  boundedToken,
  bucketKeys,
  decodeToken,
  encodeToken,
  type JetStream,
  type NatsLink,
  type NatsNames,
  NO_MESSAGE,
  natsNames,
  WRONG_LAST_SEQUENCE,
} from "../nats/connection.js";
import type { PresenceEntry } from "./presence.js";

/** How long the events stream remembers a message id, and keeps its messages. */
export const DEDUPE_MS = 120_000;
const NANOS = 1_000_000;

/** A member a sweep took out: what its leave carries, which entry revision it stands for, and whether the leave is out. */
export interface Tombstone {
  member: Member;
  rev: number;
  sent: boolean;
}

/** A key of the bucket, split into its parts (still encoded). */
export type ParsedKey =
  | { kind: "entry"; room: string; node: string; user: string; client: string }
  | { kind: "tomb"; room: string; node: string; client: string }
  | { kind: "index"; node: string };

/** Which of the two buckets a key is in. */
export type BucketName = "members" | "sweeps";

export class PresenceBucket {
  /** Entries and tombstones. */
  readonly kv: KV;
  /** Index and claim keys. */
  readonly sweeps: KV;
  private readonly link: NatsLink;
  private readonly manager: JetStreamManager;
  private readonly js: JetStreamClient;
  private readonly names: NatsNames;

  private constructor(link: NatsLink, names: NatsNames, buckets: { kv: KV; sweeps: KV }, js: JetStream) {
    this.link = link;
    this.names = names;
    this.kv = buckets.kv;
    this.sweeps = buckets.sweeps;
    this.manager = js.manager;
    this.js = js.client;
  }

  /** The buckets (created with `ttlMs` as their TTL if missing) and the events stream, on the live connection. */
  static async open(link: NatsLink, prefix: string, ttlMs: number): Promise<PresenceBucket> {
    const names = natsNames(prefix);
    const js = await link.jetstream();
    const views = link.live().jetstream({ timeout: link.timeoutMs }).views;
    const kv = await views.kv(names.presenceBucket, { ttl: ttlMs, history: 1 });
    const sweeps = await views.kv(names.presenceSweepBucket, { ttl: ttlMs, history: 1 });
    await ensureEventStream(js.manager, names);
    return new PresenceBucket(link, names, { kv, sweeps }, js);
  }

  /** The entries of `room` (any instance), of `client` only if given. */
  roomEntries(room: string, client?: string): Promise<string[]> {
    return this.keys(`m.${encodeToken(room)}.*.*.${client === undefined ? "*" : encodeToken(client)}`);
  }

  /** The entries of instance `node`, in every room. */
  nodeEntries(node: string): Promise<string[]> {
    return this.keys(`m.*.${encodeToken(node)}.*.*`);
  }

  /** The tombstones of instance `node`'s members, in every room. */
  nodeTombs(node: string): Promise<string[]> {
    return this.keys(`g.*.${encodeToken(node)}.*`);
  }

  /** The instances that have an index key. */
  async indexedNodes(): Promise<string[]> {
    return (await this.keys("n.*", "sweeps")).map((key) => decodeToken(key.slice(2)));
  }

  keys(filter: string, bucket: BucketName = "members"): Promise<string[]> {
    return bucketKeys(this.link, this.bucketName(bucket), filter);
  }

  /**
   * Deletes the key whose message is revision `rev`, if it still is (a key
   * written again has a newer one); false when that message is gone.
   */
  async deleteRevision(rev: number, bucket: BucketName = "members"): Promise<boolean> {
    try {
      return await this.manager.streams.deleteMessage(`KV_${this.bucketName(bucket)}`, rev, false);
    } catch (err) {
      if (apiCode(err) === NO_MESSAGE || /no message found/i.test(messageOf(err))) return false;
      throw err;
    }
  }

  /** Deletes whatever `key` holds, leaving no marker behind. */
  async deleteKey(key: string): Promise<void> {
    const bucket = this.names.presenceBucket;
    await this.manager.streams.purge(`KV_${bucket}`, { filter: `$KV.${bucket}.${key}` });
  }

  /**
   * Publishes `envelope` on `channel` through the events stream, once per
   * `id` within DEDUPE_MS: resolves when it is stored (and so republished)
   * or was already.
   */
  async announce(channel: string, envelope: Envelope, id: string): Promise<void> {
    await this.js.publish(this.names.presenceEvent(channel), encodeEnvelope(envelope), {
      msgID: createHash("sha256").update(id).digest("base64url"),
    });
  }

  private bucketName(bucket: BucketName): string {
    return bucket === "members" ? this.names.presenceBucket : this.names.presenceSweepBucket;
  }
}

export function entryKey(room: string, entry: Pick<PresenceEntry, "user" | "client" | "node">): string {
  return `m.${encodeToken(room)}.${encodeToken(entry.node)}.${boundedToken(entry.user)}.${encodeToken(entry.client)}`;
}

export function tombKey(room: string, node: string, client: string): string {
  return `g.${encodeToken(room)}.${encodeToken(node)}.${encodeToken(client)}`;
}

export function indexKey(node: string): string {
  return `n.${encodeToken(node)}`;
}

export function lockKey(node: string): string {
  return `s.${encodeToken(node)}`;
}

/** The parts of a bucket key, or undefined for a key crier does not write. */
export function parseKey(key: string): ParsedKey | undefined {
  const parts = key.split(".");
  const [kind, a = "", b = "", c = "", d = ""] = parts;
  if (kind === "m" && parts.length === 5) return { kind: "entry", room: a, node: b, user: c, client: d };
  if (kind === "g" && parts.length === 4) return { kind: "tomb", room: a, node: b, client: c };
  if (kind === "n" && parts.length === 2) return { kind: "index", node: a };
  return undefined;
}

/** The stored form of an entry. */
export function entryText(entry: PresenceEntry): string {
  const stored: PresenceEntry = { user: entry.user, client: entry.client, node: entry.node };
  if (entry.info !== undefined) stored.info = entry.info;
  return JSON.stringify(stored);
}

/** A stored entry, or undefined when the value is not one. */
export function parseEntry(text: string): PresenceEntry | undefined {
  const v = parseJsonObject(text);
  const member = memberIn(v);
  return member === undefined || typeof v?.node !== "string" ? undefined : { ...member, node: v.node };
}

/** A stored tombstone, or undefined when the value is not one. */
export function parseTombstone(text: string): Tombstone | undefined {
  const v = parseJsonObject(text);
  if (v === undefined || typeof v.rev !== "number" || typeof v.sent !== "boolean") return undefined;
  const member =
    typeof v.member === "object" && v.member !== null ? memberIn(v.member as Record<string, unknown>) : undefined;
  return member === undefined ? undefined : { member, rev: v.rev, sent: v.sent };
}

/** The member a stored object describes ({user, client, info?}), or undefined. */
function memberIn(v: Record<string, unknown> | undefined): Member | undefined {
  if (v === undefined || typeof v.user !== "string" || typeof v.client !== "string") return undefined;
  const member: Member = { user: v.user, client: v.client };
  if (typeof v.info === "object" && v.info !== null && !Array.isArray(v.info)) member.info = v.info as Member["info"];
  return member;
}

/** Whether a KV write failed because the key was not at the revision it expected. */
export function lostRace(err: unknown): boolean {
  return apiCode(err) === WRONG_LAST_SEQUENCE || (err instanceof NatsError && /wrong last sequence/i.test(err.message));
}

/** The events stream, created if missing; it republishes every event on the room's live subject. */
async function ensureEventStream(manager: JetStreamManager, names: NatsNames): Promise<void> {
  try {
    await manager.streams.info(names.presenceEvents);
  } catch (err) {
    if (!(err instanceof NatsError && /stream not found/i.test(err.message))) throw err;
    await manager.streams.add({
      name: names.presenceEvents,
      subjects: [names.presenceEventSubjects],
      retention: RetentionPolicy.Limits,
      // Events matter only until they are delivered: memory, kept as long as their ids are remembered.
      storage: StorageType.Memory,
      max_age: DEDUPE_MS * NANOS,
      duplicate_window: DEDUPE_MS * NANOS,
      max_bytes: 64 * 1024 * 1024,
      discard: DiscardPolicy.Old,
      republish: {
        src: names.presenceEventSubjects,
        dest: names.liveSubjects.replace(/\*$/, "{{wildcard(1)}}"),
      },
    });
  }
}
