// History in Redis, shared by every instance: per room a stream of retained
// messages and a hash with the epoch and the last offset. A publication is one
// Lua script (append, then PUBLISH on the room's channel), so the offsets'
// order is the order every subscriber on every instance sees.

import { ProtocolError, type StreamPosition } from "crier-protocol";
import { Redis } from "ioredis";
import { type Logger, pino } from "pino";
import { decodeEnvelope, type Envelope, encodeEnvelopeParts } from "../broker/envelope.js";
import { backoffDelay, quit, redactUrl } from "../redis/connection.js";
import {
  type HistoryOptions,
  type HistoryRead,
  type HistoryStore,
  META_MIN_TTL_MS,
  newEpoch,
  type ReadOptions,
} from "./history.js";
import { PUBLISH_SCRIPT, READ_SCRIPT } from "./redis-scripts.js";

export interface RedisHistoryOptions {
  /** redis:// or rediss:// URL. */
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

type ScriptCall = (...args: Array<string | number>) => Promise<unknown>;

/** Replies Redis gives while it cannot serve writes for now: unavailable, not a bug. */
const TRANSIENT_REPLY = /^(LOADING|OOM|READONLY|MASTERDOWN|BUSY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS)\b/;

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class RedisHistory implements HistoryStore {
  private readonly redis: Redis;
  private readonly url: string;
  private readonly prefix: string;
  private readonly log: Logger;
  private readonly publishScript: ScriptCall;
  private readonly readScript: ScriptCall;
  /** Rejections of calls in flight, settled at once when the connection drops. */
  private readonly inFlight = new Set<(err: Error) => void>();
  /** Settles when the first connection attempt does (either way); until then calls wait for it. */
  private readonly firstAttempt: Promise<void>;
  private firstAttemptDone = false;
  /** Whether the connection was ready when last heard of, to log an outage once. */
  private up = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(options: RedisHistoryOptions) {
    const prefix = options.prefix ?? "crier:";
    if (/[{}]/.test(prefix)) {
      // The room in braces is the keys' hash tag; a brace in the prefix would move or break it.
      throw new Error(`redis history: the key prefix "${prefix}" must not contain braces`);
    }
    this.prefix = prefix;
    this.url = redactUrl(options.url);
    this.log = (options.logger ?? pino({ enabled: false })).child({ component: "history", redis: this.url });
    const timeoutMs = options.timeoutMs ?? 2000;
    const baseMs = options.retryBaseMs ?? 100;
    const maxMs = options.retryMaxMs ?? 5000;
    this.redis = new Redis(options.url, {
      lazyConnect: true,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      retryStrategy: (attempt: number) => backoffDelay(attempt, baseMs, maxMs),
      // Nothing queued or resent while down: a publish gets `unavailable` now, not a
      // late append (with an offset and a delivery) the publisher was never told of.
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      disconnectTimeout: 200,
      // Scripts issued in one tick leave in one write.
      enableAutoPipelining: true,
      connectionName: "crier-history",
    });
    this.publishScript = scriptCommand(this.redis, "crierHistoryPublish", PUBLISH_SCRIPT);
    this.readScript = scriptCommand(this.redis, "crierHistoryRead", READ_SCRIPT);
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
      this.up = true;
      this.log.info("redis history ready");
    });
    this.redis.on("close", () => {
      // Once per outage, not once per failed reconnect attempt.
      if (this.up && !this.closed) this.log.warn("redis history connection lost; reconnecting");
      this.up = false;
      this.settleInFlight(`connection to redis at ${this.url} lost`);
    });
    // Failures arrive as "error" events and are retried with backoff.
    this.redis.connect().catch(() => {});
  }

  /**
   * Resolves once Redis answers; rejects naming the URL if it does not within
   * `timeoutMs`. Optional: calls made before the first connection wait for it.
   */
  async start(timeoutMs = 5000): Promise<void> {
    if (this.redis.status === "ready") return;
    if (this.closed) throw new Error("redis history: start() after close()");
    let timer: NodeJS.Timeout | undefined;
    let onReady = (): void => {};
    const ready = await new Promise<boolean>((resolve) => {
      onReady = () => resolve(true);
      this.redis.once("ready", onReady);
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    clearTimeout(timer);
    this.redis.off("ready", onReady);
    if (!ready) throw new Error(`redis history: cannot reach Redis at ${this.url} within ${timeoutMs} ms`);
  }

  async publish(room: string, channel: string, envelope: Envelope, options: HistoryOptions): Promise<StreamPosition> {
    const { head, tail } = encodeEnvelopeParts(envelope);
    const reply = await this.call(`publish to ${room}`, () =>
      this.publishScript(
        this.streamKey(room),
        this.metaKey(room),
        newEpoch(),
        options.size,
        options.ttlMs,
        Math.max(options.ttlMs, META_MIN_TTL_MS),
        channel,
        head,
        tail,
      ),
    );
    const [offset, epoch] = Array.isArray(reply) ? (reply as unknown[]) : [];
    if (typeof offset !== "number" || typeof epoch !== "string") throw this.malformed("publish", reply);
    return { offset, epoch };
  }

  async read(room: string, options: ReadOptions & { ttlMs: number }): Promise<HistoryRead> {
    const { since, limit } = options;
    const reply = await this.call(`read of ${room}`, () =>
      this.readScript(
        this.streamKey(room),
        this.metaKey(room),
        newEpoch(),
        options.ttlMs,
        Math.max(options.ttlMs, META_MIN_TTL_MS),
        since === undefined ? "" : since.offset,
        since?.epoch ?? "",
        limit === undefined ? -1 : Math.max(0, limit),
      ),
    );
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
    return !this.closed && this.redis.status === "ready";
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.settleInFlight("the history store is closed");
    await quit(this.redis);
  }

  private streamKey(room: string): string {
    return `${this.prefix}history:{${room}}`;
  }

  private metaKey(room: string): string {
    return `${this.prefix}meta:{${room}}`;
  }

  /**
   * Runs a script, failing fast with `unavailable` while Redis is unreachable;
   * only the very first connection attempt is waited for (it is bounded by
   * connectTimeout), so a call right after construction does not fail needlessly.
   */
  private async call(what: string, run: () => Promise<unknown>): Promise<unknown> {
    if (!this.firstAttemptDone && !this.closed) await this.firstAttempt;
    if (this.closed) throw new ProtocolError("unavailable", "the history store is closed");
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

  /**
   * Unreachable, timed out or refusing writes for now: `unavailable`. A timed
   * out script may still have run: the caller hears `unavailable` and the
   * message can appear in history anyway, which is a false failure, never a
   * false success. Any other error reply is a bug: `internal`, logged.
   */
  private classify(what: string, err: Error): ProtocolError {
    if (err instanceof ProtocolError) return err;
    if (err.name === "ReplyError" && !TRANSIENT_REPLY.test(err.message)) {
      this.log.error({ err }, `redis history ${what} failed`);
      return new ProtocolError("internal", `${what} failed: ${err.message}`);
    }
    return new ProtocolError("unavailable", `${what} failed: ${err.message}`);
  }

  private malformed(what: string, reply: unknown): ProtocolError {
    const shown = typeof reply === "string" ? reply : JSON.stringify(reply);
    this.log.error({ reply: shown.slice(0, 500) }, `unexpected reply from the ${what} script`);
    return new ProtocolError("internal", `unexpected reply from the history ${what} script`);
  }

  private settleInFlight(why: string): void {
    const pending = [...this.inFlight];
    this.inFlight.clear();
    for (const fail of pending) fail(new Error(why));
  }
}

/** Defines a script as a command (EVALSHA, and EVAL once after a NOSCRIPT, e.g. after a Redis restart). */
function scriptCommand(conn: Redis, name: string, lua: string): ScriptCall {
  conn.defineCommand(name, { numberOfKeys: 2, lua });
  const command: unknown = Reflect.get(conn, name);
  if (typeof command !== "function") throw new Error(`redis history: defining the ${name} script failed`);
  return (...args) => Promise.resolve(command.apply(conn, args));
}
