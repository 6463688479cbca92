// Membership through NATS: each node rewrites its NodeInfo in a JetStream KV
// bucket whose TTL (max_age) is the node timeout, so a node that stops
// heartbeating simply expires, judged by the NATS server's clock alone, as
// the Redis membership is by Redis's. Presence (presence/nats.ts) reads the
// same bucket to tell live nodes from gone ones.

import { ProtocolError } from "crier-protocol";
import type { KV } from "nats";
import type { Logger } from "pino";
import { messageOf } from "../describe-error.js";
import { bucketKeys, encodeToken, type NatsLink, natsNames } from "../nats/connection.js";
import { DEFAULT_PREFIX } from "../redis/connection.js";
import { HeartbeatMembership } from "./heartbeats.js";
import { type Membership, type NodeInfo, parseNodeInfo } from "./membership.js";

export interface NatsMembershipOptions {
  link: NatsLink;
  /** Prefix shared with the broker's channel prefix (default "crier:"); scopes the bucket. */
  prefix?: string;
  /** How often this node rewrites its entry (default 3000). */
  heartbeatMs?: number;
  /** How long an entry lives without a heartbeat; must exceed heartbeatMs (default 10000). */
  nodeTimeoutMs?: number;
}

/**
 * The bucket of node entries, created with `nodeTimeoutMs` as its TTL, or
 * brought to it if an earlier configuration made it with another.
 */
export async function nodesBucket(link: NatsLink, prefix: string, nodeTimeoutMs: number): Promise<KV> {
  const { manager } = await link.jetstream();
  const conn = link.live();
  const kv = await conn.jetstream({ timeout: link.timeoutMs }).views.kv(natsNames(prefix).nodesBucket, {
    ttl: nodeTimeoutMs,
    history: 1,
  });
  const status = await kv.status();
  if (status.ttl !== nodeTimeoutMs) {
    const stream = status.streamInfo.config;
    const maxAge = nodeTimeoutMs * 1_000_000;
    // The server refuses a duplicate window longer than max_age (it made the window the old TTL).
    const window = Math.min(stream.duplicate_window, maxAge);
    await manager.streams.update(stream.name, { ...stream, max_age: maxAge, duplicate_window: window });
  }
  return kv;
}

/** Whether node `id` has its entry in the nodes bucket: a delete or purge marker is a node that left. */
export async function isLiveNode(nodes: KV, id: string): Promise<boolean> {
  const entry = await nodes.get(encodeToken(id));
  return entry !== null && entry.operation === "PUT";
}

export class NatsMembership extends HeartbeatMembership implements Membership {
  private readonly link: NatsLink;
  private readonly prefix: string;
  private readonly nodeTimeoutMs: number;
  private kv: KV | undefined;
  /** Bind the bucket again before the next heartbeat: NATS came back, perhaps without its store. */
  private reopen = false;

  constructor(options: NatsMembershipOptions) {
    const heartbeatMs = options.heartbeatMs ?? 3000;
    super("NATS", heartbeatMs);
    this.link = options.link;
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.nodeTimeoutMs = options.nodeTimeoutMs ?? 10_000;
    if (!(heartbeatMs > 0) || !(this.nodeTimeoutMs > heartbeatMs)) {
      throw new Error(
        `membership: nodeTimeoutMs (${this.nodeTimeoutMs}) must exceed heartbeatMs (${heartbeatMs}) > 0, or live nodes would expire between heartbeats`,
      );
    }
  }

  protected get log(): Logger {
    return this.link.log;
  }

  /** Rejects, naming the URL, if NATS is unreachable or the first heartbeat fails: a node must not start unseen. */
  async start(info: () => NodeInfo): Promise<void> {
    this.begin(info);
    try {
      await this.link.start();
      this.kv = await nodesBucket(this.link, this.prefix, this.nodeTimeoutMs);
      await this.heartbeat(true);
    } catch (err) {
      await this.close();
      throw new Error(`membership: cannot announce this node in NATS at ${this.link.url}: ${messageOf(err)}`);
    }
    // After a reconnect (NATS may have restarted empty) announce at once, not a heartbeat later.
    this.link.onChange((up) => {
      if (!up) return;
      this.reopen = true;
      this.beat();
    });
    this.beatEvery();
  }

  async nodes(): Promise<NodeInfo[]> {
    const kv = this.kv;
    const nodes: NodeInfo[] = [];
    try {
      this.link.live();
      if (kv === undefined) return [];
      const keys = await bucketKeys(this.link, natsNames(this.prefix).nodesBucket);
      const entries = await Promise.all(keys.map((key) => kv.get(key)));
      for (const entry of entries) {
        if (entry === null || entry.operation !== "PUT") continue;
        const node = parseNodeInfo(entry.string());
        if (node === undefined)
          this.link.log.warn({ entry: entry.string().slice(0, 200) }, "ignored a malformed node entry");
        else nodes.push(node);
      }
    } catch (err) {
      if (err instanceof ProtocolError) throw err;
      throw new ProtocolError(
        "unavailable",
        `cluster membership unavailable: NATS at ${this.link.url}: ${messageOf(err)}`,
      );
    }
    return nodes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  protected async withdraw(): Promise<void> {
    const id = this.announcedId;
    if (id !== undefined && this.kv !== undefined && this.link.isReady()) {
      // Withdrawn at once so /api/info does not list a node that shut down cleanly.
      await this.kv.purge(encodeToken(id)).catch((err: unknown) => {
        this.link.log.warn({ err: messageOf(err) }, "could not withdraw node entry; it expires");
      });
    }
    await this.link.close();
  }

  protected async write(entry: NodeInfo): Promise<boolean> {
    if (this.kv === undefined) throw new Error("the nodes bucket is not open");
    this.link.live();
    if (this.reopen) {
      this.kv = await nodesBucket(this.link, this.prefix, this.nodeTimeoutMs);
      this.reopen = false;
    }
    const key = encodeToken(entry.id);
    const existing = await this.kv.get(key);
    await this.kv.put(key, JSON.stringify(entry));
    return existing !== null && existing.operation === "PUT";
  }

  protected override onBeatFailed(): void {
    this.reopen = true;
  }
}
