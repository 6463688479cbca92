// The Redis pub/sub backplane: one connection publishes, one listens. It keeps
// the set of wanted channels itself, so an outage ends with exactly those
// channels subscribed again, and it is ready only while both connections are.
// Publications to rooms with history are one Lua script on the publish
// connection (append to the room's stream, then PUBLISH), so offsets are
// assigned in the order every instance receives them.

import { ProtocolError, type StreamPosition } from "crier-protocol";
import type { Redis } from "ioredis";
import { type Logger, pino } from "pino";
import { messageOf } from "../describe-error.js";
import { META_MIN_TTL_MS, newEpoch } from "../history/history.js";
import { historyKeys, PUBLISH_SCRIPT } from "../history/redis-scripts.js";
import {
  checkKeyPrefix,
  connectionOptions,
  createRedis,
  DEFAULT_PREFIX,
  defineScript,
  quit,
  redactUrl,
  redisFailure,
  type ScriptCall,
} from "../redis/connection.js";
import { redisUrlProblem } from "../redis/url.js";
import {
  type AppendOptions,
  type Broker,
  type BrokerStats,
  type DeliveryHandler,
  emptyBrokerStats,
  type ReadyListener,
} from "./broker.js";
import { decodeEnvelope, type Envelope, encodeEnvelope, encodeEnvelopeParts } from "./envelope.js";

export interface RedisBrokerOptions {
  /** redis:// or rediss:// URL. */
  url: string;
  logger?: Logger;
  /** start() rejects if Redis is not reachable within this long (default 5000). */
  startTimeoutMs?: number;
  /** Bound on every round trip (connect, PUBLISH, SUBSCRIBE, PING), so nothing hangs (default 2000). */
  timeoutMs?: number;
  /** Reconnect backoff: first delay and cap, with jitter (defaults 100 and 5000). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Interval of the PING that catches a connection the network silently dropped; 0 disables (default 5000). */
  healthCheckMs?: number;
  /** Prefix of CLIENT SETNAME, to find these connections in CLIENT LIST (default "crier"). */
  connectionName?: string;
  /** Prefix of the rooms' history keys (default "crier:"); no braces, so a room's keys hash on the room alone. */
  prefix?: string;
}

export type RedisBrokerStats = BrokerStats;

export class RedisBroker implements Broker {
  private readonly url: string;
  private readonly log: Logger;
  private readonly startTimeoutMs: number;
  private readonly timeoutMs: number;
  private readonly healthCheckMs: number;
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly prefix: string;
  private readonly appendScript: ScriptCall;

  private handler: DeliveryHandler | undefined;
  /** The channels the hub wants, in the state its last call left them: the source of truth on reconnect. */
  private readonly wanted = new Set<string>();
  private readonly readyListeners: ReadyListener[] = [];
  /** Rejections of round trips in flight, settled at once when their connection drops. */
  private readonly inFlight = { pub: new Set<(err: Error) => void>(), sub: new Set<(err: Error) => void>() };
  private readonly counters: RedisBrokerStats = emptyBrokerStats();

  private pubUp = false;
  /** True once the subscriber connection is up and every wanted channel is subscribed again on it. */
  private subLive = false;
  /** Bumped on every subscriber connect/disconnect, so a late resubscribe result of an old connection is ignored. */
  private subGeneration = 0;
  private ready = false;
  private started = false;
  /** Set first thing in close(), so everything after sees the broker as closed. */
  private closed = false;
  private closing: Promise<void> | undefined;
  private downSince = 0;
  private lastError = "";
  private healthTimer: NodeJS.Timeout | undefined;

  constructor(options: RedisBrokerOptions) {
    const problem = redisUrlProblem(options.url);
    if (problem !== undefined) {
      throw new Error(`redis broker: invalid url "${redactUrl(options.url)}" (${problem})`);
    }
    this.url = redactUrl(options.url);
    this.log = (options.logger ?? pino({ enabled: false })).child({ component: "broker", redis: this.url });
    this.startTimeoutMs = options.startTimeoutMs ?? 5000;
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.healthCheckMs = options.healthCheckMs ?? 5000;
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    checkKeyPrefix("redis broker", this.prefix);
    const name = options.connectionName ?? "crier";
    const policy = {
      timeoutMs: this.timeoutMs,
      retryBaseMs: options.retryBaseMs ?? 100,
      retryMaxMs: options.retryMaxMs ?? 5000,
    };
    this.pub = createRedis(options.url, connectionOptions({ ...policy, connectionName: `${name}-pub` }));
    // Resubscription is ours (see onSubscriberReady): ioredis's autoResubscribe
    // does not tell us when it is confirmed, and readiness must wait for that.
    this.sub = createRedis(options.url, {
      ...connectionOptions({ ...policy, connectionName: `${name}-sub` }),
      autoResubscribe: false,
    });
    this.appendScript = defineScript(this.pub, "crierHistoryPublish", 2, PUBLISH_SCRIPT);
    this.watch(this.pub, "pub");
    this.watch(this.sub, "sub");
    this.sub.on("message", (channel: string, text: string) => this.onMessage(channel, text));
  }

  /**
   * Connects both connections. Fails fast: if Redis cannot be reached within
   * startTimeoutMs, rejects naming the URL and the last error, because an
   * operator would rather see a misconfigured URL crash the start (and the
   * orchestrator retry it) than an instance that runs but can never be ready.
   * Outages after a successful start are survived by reconnecting.
   */
  async start(handler: DeliveryHandler): Promise<void> {
    if (this.started) throw new Error("redis broker: start() called twice");
    if (this.closed) throw new Error("redis broker: start() after close()");
    this.started = true;
    this.handler = handler;
    let onReady: ReadyListener = () => {};
    let timer: NodeJS.Timeout | undefined;
    const outcome = await new Promise<"ready" | "timeout">((resolve) => {
      onReady = (ready) => {
        if (ready) resolve("ready");
      };
      this.readyListeners.push(onReady);
      timer = setTimeout(() => resolve("timeout"), this.startTimeoutMs);
      // Failures arrive as "error" events (kept in lastError) and are retried with backoff.
      this.pub.connect().catch(() => {});
      this.sub.connect().catch(() => {});
    });
    clearTimeout(timer);
    this.readyListeners.splice(this.readyListeners.indexOf(onReady), 1);
    if (outcome === "timeout" || this.closed) {
      const why = this.closed ? "closed while starting" : this.lastError === "" ? "no answer" : this.lastError;
      await this.close();
      throw new Error(`redis broker: cannot reach Redis at ${this.url} within ${this.startTimeoutMs} ms (${why})`);
    }
    if (this.healthCheckMs > 0) {
      this.healthTimer = setInterval(() => this.healthCheck(), this.healthCheckMs);
      this.healthTimer.unref();
    }
    this.log.info("redis backplane ready");
  }

  /**
   * Commands on one connection reach Redis in the order sent, so subscribe and
   * unsubscribe calls are applied in call order without a queue of our own.
   * While the subscriber connection is down the wish is recorded (it is applied
   * on reconnect) and the call rejects with `unavailable`, since it is not live.
   */
  async subscribe(channel: string): Promise<void> {
    if (this.closed) throw new ProtocolError("unavailable", "the broker is closed");
    this.wanted.add(channel);
    if (this.sub.status !== "ready") {
      throw new ProtocolError(
        "unavailable",
        `redis at ${this.url} is unreachable; ${channel} is subscribed on reconnect`,
      );
    }
    await this.roundTrip("sub", this.sub.subscribe(channel), `subscribe ${channel}`);
  }

  /** While down there is nothing to undo: the reconnect subscribes only wanted channels. */
  async unsubscribe(channel: string): Promise<void> {
    this.wanted.delete(channel);
    if (this.closed || this.sub.status !== "ready") return;
    await this.roundTrip("sub", this.sub.unsubscribe(channel), `unsubscribe ${channel}`);
  }

  /** Resolves once Redis acknowledged the PUBLISH; rejects with `unavailable` at once while down. */
  async publish(channel: string, envelope: Envelope): Promise<void> {
    if (!this.ready) {
      this.counters.publishFailed++;
      const why = this.closed ? "the broker is closed" : `redis at ${this.url} is unreachable`;
      throw new ProtocolError("unavailable", why);
    }
    try {
      await this.roundTrip("pub", this.pub.publish(channel, encodeEnvelope(envelope)), `publish to ${channel}`);
      this.counters.published++;
    } catch (err) {
      this.counters.publishFailed++;
      throw err;
    }
  }

  /**
   * Appends to the room's history stream and publishes in one script. Error
   * replies that are not transient (a key of the wrong type) are `internal`;
   * everything else that fails is `unavailable`.
   */
  async append(channel: string, envelope: Envelope, options: AppendOptions): Promise<StreamPosition> {
    if (!this.ready) {
      this.counters.publishFailed++;
      const why = this.closed ? "the broker is closed" : `redis at ${this.url} is unreachable`;
      throw new ProtocolError("unavailable", why);
    }
    const { head, tail } = encodeEnvelopeParts(envelope);
    const [stream, meta] = historyKeys(this.prefix, options.room);
    const what = `publish to ${options.room}`;
    let reply: unknown;
    try {
      reply = await this.roundTrip(
        "pub",
        this.appendScript(
          stream,
          meta,
          newEpoch(),
          options.size,
          options.ttlMs,
          Math.max(options.ttlMs, META_MIN_TTL_MS),
          channel,
          head,
          tail,
        ),
        what,
      );
    } catch (err) {
      this.counters.publishFailed++;
      throw err;
    }
    const [offset, epoch] = Array.isArray(reply) ? (reply as unknown[]) : [];
    if (typeof offset !== "number" || typeof epoch !== "string") {
      this.counters.publishFailed++;
      this.log.error(
        { reply: JSON.stringify(reply).slice(0, 500) },
        "unexpected reply from the history publish script",
      );
      throw new ProtocolError("internal", "unexpected reply from the history publish script");
    }
    this.counters.published++;
    return { offset, epoch };
  }

  isReady(): boolean {
    return this.ready;
  }

  onReadyChange(listener: ReadyListener): void {
    this.readyListeners.push(listener);
  }

  /** Channels wanted by the hub; after an outage these are exactly the ones subscribed again. */
  channelCount(): number {
    return this.wanted.size;
  }

  stats(): RedisBrokerStats {
    return { ...this.counters };
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    clearInterval(this.healthTimer);
    this.wanted.clear();
    this.settleInFlight("pub", "the broker is closed");
    this.settleInFlight("sub", "the broker is closed");
    this.setReady();
    await Promise.all([quit(this.pub), quit(this.sub)]);
    this.handler = undefined;
  }

  /** Wires a connection's lifecycle to readiness. */
  private watch(conn: Redis, role: "pub" | "sub"): void {
    conn.on("error", (err: Error) => {
      this.lastError = err.message;
      this.log.debug({ err, connection: role }, "redis connection error");
    });
    conn.on("ready", () => {
      if (role === "pub") {
        this.pubUp = true;
        this.setReady();
      } else {
        void this.onSubscriberReady();
      }
    });
    conn.on("close", () => {
      // A killed server just closes the socket, with no "error" to explain it.
      if (this.lastError === "") this.lastError = "connection closed by the server";
      if (role === "pub") this.pubUp = false;
      else {
        this.subLive = false;
        this.subGeneration++;
      }
      this.settleInFlight(role, `connection to redis at ${this.url} lost`);
      this.setReady();
    });
  }

  private async onSubscriberReady(): Promise<void> {
    const generation = ++this.subGeneration;
    const channels = [...this.wanted];
    try {
      if (channels.length > 0) await this.roundTrip("sub", this.sub.subscribe(...channels), "resubscribe");
    } catch (err) {
      // The connection dropped again (the next "ready" retries) or Redis did not
      // answer in time: reconnect rather than stay up with channels missing.
      this.log.warn({ err, channels: channels.length }, "resubscribe failed; reconnecting");
      if (generation === this.subGeneration && !this.closed) this.sub.disconnect(true);
      return;
    }
    if (generation !== this.subGeneration || this.closed) return;
    if (channels.length > 0) this.log.info({ channels: channels.length }, "resubscribed after reconnect");
    this.subLive = true;
    this.setReady();
  }

  private onMessage(channel: string, text: string): void {
    this.counters.received++;
    // A message already on its way when unsubscribe was called: drop it, so
    // "nothing after unsubscribe" holds as it does for the memory broker.
    if (!this.wanted.has(channel)) return;
    const handler = this.handler;
    if (handler === undefined) return;
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(text);
    } catch (err) {
      this.counters.malformed++;
      this.log.warn({ channel, bytes: text.length, err: messageOf(err) }, "dropped a message that is not an envelope");
      return;
    }
    this.counters.delivered++;
    try {
      handler(channel, envelope);
    } catch (err) {
      // This runs inside ioredis's reply parser: a throw here must not reach it.
      this.log.error({ err, channel }, "delivery handler threw");
    }
  }

  /** PINGs both connections so a silently dead socket is noticed and replaced. */
  private healthCheck(): void {
    for (const [role, conn] of [
      ["pub", this.pub],
      ["sub", this.sub],
    ] as const) {
      if (conn.status !== "ready" || this.closed) continue;
      this.roundTrip(role, conn.ping(), "ping").catch((err: unknown) => {
        if (this.closed || conn.status !== "ready") return;
        this.log.warn({ err: messageOf(err), connection: role }, "redis did not answer PING; reconnecting");
        this.lastError = `no answer to PING: ${messageOf(err)}`;
        if (role === "pub") this.pubUp = false;
        else this.subLive = false;
        this.setReady();
        conn.disconnect(true);
      });
    }
  }

  /**
   * Awaits a command, turning a failure into ProtocolError("unavailable") (or
   * "internal" for an error reply that is a bug), and rejects at once if the
   * connection drops or the broker closes first, rather than leave the caller
   * to ioredis's queue handling or the command timeout.
   */
  private roundTrip<T>(role: "pub" | "sub", command: Promise<T>, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const fail = (err: Error): void => {
        this.inFlight[role].delete(fail);
        const { error, bug } = redisFailure(what, err);
        if (bug) this.log.error({ err }, `${what} failed`);
        reject(error);
      };
      this.inFlight[role].add(fail);
      command.then(
        (value) => {
          this.inFlight[role].delete(fail);
          resolve(value);
        },
        (err: unknown) => fail(err instanceof Error ? err : new Error(String(err))),
      );
    });
  }

  private settleInFlight(role: "pub" | "sub", why: string): void {
    const pending = [...this.inFlight[role]];
    this.inFlight[role].clear();
    for (const fail of pending) fail(new Error(why));
  }

  /** Recomputes readiness and tells listeners about a change, logging the outage's start and end. */
  private setReady(): void {
    const ready = this.started && !this.closed && this.pubUp && this.subLive;
    if (ready === this.ready) return;
    this.ready = ready;
    if (!this.closed && this.downSince > 0 && ready) {
      this.counters.recoveries++;
      this.log.info({ downMs: Date.now() - this.downSince }, "redis backplane ready again");
    }
    if (!ready && !this.closed) {
      this.downSince = Date.now();
      this.log.warn({ lastError: this.lastError }, "redis backplane down; reconnecting");
    }
    if (ready) {
      this.downSince = 0;
      this.lastError = "";
    }
    for (const listener of [...this.readyListeners]) {
      try {
        listener(ready);
      } catch (err) {
        this.log.error({ err }, "ready listener threw");
      }
    }
  }
}
