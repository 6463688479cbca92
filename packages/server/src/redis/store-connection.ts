// One ioredis connection for a Redis-backed store (history, presence), with
// the behaviour every store needs: nothing queued or resent while Redis is
// down, so a call fails fast with `unavailable` (never a late or duplicate
// write the caller was not told of); calls in flight rejected at once when the
// connection drops; reconnects with backoff and jitter; only the very first
// connection attempt is waited for, so a call right after start-up does not
// fail needlessly.

import { ProtocolError } from "crier-protocol";
import { Redis } from "ioredis";
import { type Logger, pino } from "pino";
import {
  connectionOptions,
  createClient,
  defineScript,
  quit,
  type RedisClient,
  redactUrl,
  redisFailure,
  type ScriptCall,
} from "./connection.js";

export type { ScriptCall };

export interface StoreConnectionOptions {
  url: string;
  /** Names the store in logs, errors and the Redis client name ("history", "presence"). */
  component: string;
  logger?: Logger;
  /** Bound on connecting and on every command (default 2000). */
  timeoutMs?: number;
  /** Reconnect backoff: first delay and cap, with jitter (defaults 100 and 5000). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Called when the connection is ready again after having been lost. */
  onReconnect?: () => void;
}

export class StoreConnection {
  readonly redis: RedisClient;
  /** The URL with any password masked. */
  readonly url: string;
  readonly log: Logger;
  private readonly component: string;
  /** Rejections of calls in flight, settled at once when the connection drops. */
  private readonly inFlight = new Set<(err: Error) => void>();
  /** Settles when the first connection attempt does (either way). */
  private readonly firstAttempt: Promise<void>;
  private firstAttemptDone = false;
  /** Whether the connection was ready when last heard of, to log an outage once. */
  private up = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(options: StoreConnectionOptions) {
    this.component = options.component;
    this.url = redactUrl(options.url);
    this.log = (options.logger ?? pino({ enabled: false })).child({ component: options.component, redis: this.url });
    this.redis = createClient(
      options.url,
      connectionOptions({
        timeoutMs: options.timeoutMs ?? 2000,
        retryBaseMs: options.retryBaseMs ?? 100,
        retryMaxMs: options.retryMaxMs ?? 5000,
        connectionName: `crier-${options.component}`,
      }),
    );
    this.redis.on("error", (err: Error) => this.log.debug({ err }, "redis connection error"));
    this.redis.on("ready", () => {
      const again = this.firstAttemptDone;
      this.up = true;
      this.log.info(`redis ${this.component} ready`);
      if (again) options.onReconnect?.();
    });
    this.redis.on("close", () => {
      // Once per outage, not once per failed reconnect attempt.
      if (this.up && !this.closed) this.log.warn(`redis ${this.component} connection lost; reconnecting`);
      this.up = false;
      this.settleInFlight(`connection to redis at ${this.url} lost`);
    });
    // After the listeners above, so the first "ready" still finds firstAttemptDone false
    // and is not taken for a reconnect.
    this.firstAttempt = new Promise((resolve) => {
      const settle = (): void => {
        this.firstAttemptDone = true;
        resolve();
      };
      this.redis.once("ready", settle);
      this.redis.once("close", settle);
    });
    // Failures arrive as "error" events and are retried with backoff.
    this.redis.connect().catch(() => {});
  }

  /** Resolves once Redis answers; rejects naming the URL if it does not within `timeoutMs`. */
  async start(timeoutMs = 5000): Promise<void> {
    if (this.closed) throw new Error(`redis ${this.component}: start() after close()`);
    if (this.redis.status === "ready") return;
    let timer: NodeJS.Timeout | undefined;
    let onReady = (): void => {};
    const ready = await new Promise<boolean>((resolve) => {
      onReady = () => resolve(true);
      this.redis.once("ready", onReady);
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    clearTimeout(timer);
    this.redis.off("ready", onReady);
    if (!ready) throw new Error(`redis ${this.component}: cannot reach Redis at ${this.url} within ${timeoutMs} ms`);
  }

  isReady(): boolean {
    return !this.closed && this.usable();
  }

  /**
   * Ready, and its socket still writable: between Redis going away (the
   * socket has ended) and ioredis noticing (its "close"), the status still
   * says ready while every command is refused. (A cluster has a connection
   * per node and stays ready while one master fails over: its commands to
   * that master fail one by one, as `unavailable`.)
   */
  private usable(): boolean {
    if (this.redis.status !== "ready") return false;
    return !(this.redis instanceof Redis) || this.redis.stream?.writable === true;
  }

  /** Defines a Lua script as a command (EVALSHA, and EVAL once after a NOSCRIPT, e.g. after a Redis restart). */
  script(name: string, numberOfKeys: number, lua: string): ScriptCall {
    return defineScript(this.redis, name, numberOfKeys, lua);
  }

  /** Runs `run`, failing fast with `unavailable` while Redis is unreachable. */
  async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    if (!this.firstAttemptDone && !this.closed) await this.firstAttempt;
    if (this.closed) throw new ProtocolError("unavailable", `the ${this.component} store is closed`);
    if (!this.usable()) {
      throw new ProtocolError("unavailable", `${what} failed: redis at ${this.url} is unreachable`);
    }
    return new Promise<T>((resolve, reject) => {
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

  /** `unavailable` or `internal` (see redisFailure); a bug is logged. */
  private classify(what: string, err: Error): ProtocolError {
    const { error, bug } = redisFailure(what, err);
    if (bug) this.log.error({ err }, `redis ${this.component} ${what} failed`);
    return error;
  }

  private settleInFlight(why: string): void {
    const pending = [...this.inFlight];
    this.inFlight.clear();
    for (const fail of pending) fail(new Error(why));
  }

  /** Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.settleInFlight(`the ${this.component} store is closed`);
      await quit(this.redis);
    })();
    return this.closing;
  }
}
