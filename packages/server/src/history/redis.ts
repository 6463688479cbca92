// History in Redis, shared by every instance: per room a stream of retained
// messages and a hash with the epoch and the last offset. RedisBroker.append
// writes them (append, then PUBLISH, in one script); this store reads them. On
// Redis Cluster a read returns only once a replica has everything it saw
// (broker/replicas.ts): nothing is recovered that a failover could take back.

import { ProtocolError } from "crier-protocol";
import { Cluster } from "ioredis";
import type { Logger } from "pino";
import { decodeEnvelope, type Envelope } from "../broker/envelope.js";
import { ReplicaBarrier } from "../broker/replicas.js";
import { messageOf } from "../describe-error.js";
import { checkKeyPrefix, DEFAULT_PREFIX } from "../redis/connection.js";
import { keySlot } from "../redis/slot.js";
import { type ScriptCall, StoreConnection } from "../redis/store-connection.js";
import { type HistoryRead, type HistoryStore, META_MIN_TTL_MS, newEpoch, type ReadOptions } from "./history.js";
import { historyKeys, READ_SCRIPT } from "./redis-scripts.js";

export interface RedisHistoryOptions {
  /** redis://, rediss://, redis+sentinel:// or redis+cluster:// URL. */
  url: string;
  /** Key prefix (default "crier:"); no braces, so a room's keys hash on the room alone. */
  prefix?: string;
  logger?: Logger;
  /** Bound on connecting and on every script call, so nothing hangs (default 2000). */
  timeoutMs?: number;
  /** Reconnect backoff: first delay and cap, with jitter (defaults 100 and 5000). */
  retryBaseMs?: number;
  retryMaxMs?: number;
}

export class RedisHistory implements HistoryStore {
  private readonly conn: StoreConnection;
  private readonly url: string;
  private readonly prefix: string;
  private readonly log: Logger;
  private readonly readScript: ScriptCall;
  /** Redis Cluster: a read waits for a replica to have what it saw. */
  private readonly replicas: ReplicaBarrier | undefined;

  constructor(options: RedisHistoryOptions) {
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    checkKeyPrefix("redis history", prefix);
    this.prefix = prefix;
    this.conn = new StoreConnection({
      url: options.url,
      component: "history",
      logger: options.logger,
      timeoutMs: options.timeoutMs,
      retryBaseMs: options.retryBaseMs,
      retryMaxMs: options.retryMaxMs,
    });
    this.url = this.conn.url;
    this.log = this.conn.log;
    this.readScript = this.conn.script("crierHistoryRead", 2, READ_SCRIPT);
    const redis = this.conn.redis;
    this.replicas = redis instanceof Cluster ? new ReplicaBarrier(redis, (options.timeoutMs ?? 2000) / 2) : undefined;
  }

  /**
   * Resolves once Redis answers; rejects naming the URL if it does not within
   * `timeoutMs`. Optional: calls made before the first connection wait for it.
   */
  start(timeoutMs = 5000): Promise<void> {
    return this.conn.start(timeoutMs);
  }

  async read(room: string, options: ReadOptions & { ttlMs: number }): Promise<HistoryRead> {
    const { since, limit } = options;
    const [stream, meta] = historyKeys(this.prefix, room);
    const reply = await this.conn.call(`read of ${room}`, () =>
      this.readScript(
        stream,
        meta,
        newEpoch(),
        options.ttlMs,
        Math.max(options.ttlMs, META_MIN_TTL_MS),
        since === undefined ? "" : since.offset,
        since?.epoch ?? "",
        limit === undefined ? -1 : Math.max(0, limit),
      ),
    );
    // The read wrote too (the meta's expiry), after every append it saw: once a replica has that, it has them.
    const replicas = this.replicas;
    if (replicas !== undefined) await this.conn.call(`read of ${room}`, () => replicas.confirm(keySlot(stream)));
    const [epoch, last, oldest, ...texts] = Array.isArray(reply) ? (reply as unknown[]) : [];
    if (typeof epoch !== "string" || typeof last !== "number" || typeof oldest !== "number") {
      throw this.malformed("read", reply);
    }
    const messages: Envelope[] = [];
    for (const text of texts) {
      if (typeof text !== "string") throw this.malformed("read", reply);
      try {
        messages.push(decodeEnvelope(text));
      } catch (err) {
        throw this.malformed("read", `${messageOf(err)} in ${text.slice(0, 200)}`);
      }
    }
    const complete =
      since === undefined ||
      (since.epoch === epoch && since.offset <= last && (since.offset === last || since.offset + 1 >= oldest));
    return { position: { offset: last, epoch }, messages, complete };
  }

  /** Whether Redis is reachable now. */
  isReady(): boolean {
    return this.conn.isReady();
  }

  close(): Promise<void> {
    return this.conn.close();
  }

  private malformed(what: string, reply: unknown): ProtocolError {
    const shown = typeof reply === "string" ? reply : JSON.stringify(reply);
    this.log.error({ reply: shown.slice(0, 500) }, `unexpected reply from the ${what} script`);
    return new ProtocolError("internal", `unexpected reply from the history ${what} script`);
  }
}
