// The Redis pub/sub backplane: one connection publishes, the listening side
// (subscriptions.ts) subscribes. It keeps the set of wanted channels itself,
// so an outage ends with exactly those channels subscribed again, and it is
// ready only while publishing and listening both are. Publications to rooms
// with history are one Lua script on the publish connection (append to the
// room's stream, then PUBLISH), so offsets are assigned in the order every
// instance receives them. On Redis Cluster (redis+cluster://) the publish
// connection is a Cluster client, channels are shard channels (SPUBLISH,
// SSUBSCRIBE) named with the room's hash tag, and the listening side keeps
// one connection per master; there an append is published (SPUBLISH, by a
// second script, in the room's offset order) and acknowledged only once a
// replica has it (replicas.ts), so a failover loses nothing delivered.

import { ProtocolError, type StreamPosition } from "crier-protocol";
import { Cluster } from "ioredis";
import { type Logger, pino } from "pino";
import { messageOf } from "../describe-error.js";
import { META_MIN_TTL_MS, newEpoch } from "../history/history.js";
import { APPEND_SCRIPT, historyKeys, PUBLISH_SCRIPT, RELEASE_SCRIPT } from "../history/redis-scripts.js";
import {
  checkKeyPrefix,
  clusterNodeOptions,
  connectionOptions,
  createClient,
  DEFAULT_PREFIX,
  defineScript,
  quit,
  type RedisClient,
  redactUrl,
  type ScriptCall,
} from "../redis/connection.js";
import { keySlot } from "../redis/slot.js";
import { redisUrlProblem } from "../redis/url.js";
import {
  type AppendOptions,
  type Broker,
  type BrokerStats,
  type DeliveryHandler,
  emptyBrokerStats,
  type ReadyListener,
  type ResubscribedListener,
} from "./broker.js";
import { decodeEnvelope, type Envelope, encodeEnvelope, encodeEnvelopeParts } from "./envelope.js";
import { ReplicaBarrier } from "./replicas.js";
import { RoundTrips } from "./round-trips.js";
import { ShardedSubscriptions, SingleSubscriptions, type Subscriptions } from "./subscriptions.js";

export interface RedisBrokerOptions {
  /** redis://, rediss://, redis+sentinel:// or redis+cluster:// URL. */
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
  private readonly pub: RedisClient;
  private readonly subs: Subscriptions;
  /** Redis Cluster: shard channels (SPUBLISH), routed by slot. */
  private readonly sharded: boolean;
  private readonly prefix: string;
  private readonly appendScript: ScriptCall;
  /** Redis Cluster: appends wait for a replica, then the release script publishes them. */
  private readonly replicas: ReplicaBarrier | undefined;
  private readonly releaseScript: ScriptCall | undefined;

  private handler: DeliveryHandler | undefined;
  /** The channels the hub wants, in the state its last call left them: the source of truth on reconnect. */
  private readonly wanted = new Set<string>();
  private readonly readyListeners: ReadyListener[] = [];
  private readonly resubscribedListeners: ResubscribedListener[] = [];
  /** Round trips on the publish connection, settled at once when it drops. */
  private readonly pubTrips: RoundTrips;
  private readonly counters: RedisBrokerStats = emptyBrokerStats();

  private pubUp = false;
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
    // Never resent: an append+publish that may have run must not run twice.
    this.pub = createClient(options.url, connectionOptions({ ...policy, connectionName: `${name}-pub` }), {
      resend: false,
    });
    this.pubTrips = new RoundTrips(this.log);
    this.sharded = this.pub instanceof Cluster;
    const hooks = {
      wanted: this.wanted,
      log: this.log,
      url: this.url,
      onMessage: (channel: string, text: string) => this.onMessage(channel, text),
      onLiveChange: () => this.setReady(),
      onTrouble: (why: string) => {
        if (why !== "") this.lastError = why;
        else if (this.lastError === "") this.lastError = "connection closed by the server";
      },
      onResubscribed: (channels: string[]) => {
        for (const listener of this.resubscribedListeners) {
          try {
            listener(channels);
          } catch (err) {
            this.log.error({ err }, "resubscribed listener threw");
          }
        }
      },
    };
    const subOptions = connectionOptions({ ...policy, connectionName: `${name}-sub` });
    this.subs =
      this.pub instanceof Cluster
        ? new ShardedSubscriptions(this.pub, { ...subOptions, ...clusterNodeOptions(options.url) }, hooks)
        : new SingleSubscriptions(options.url, subOptions, hooks);
    if (this.pub instanceof Cluster) {
      // The script only appends: the append is published once replicated.
      this.replicas = new ReplicaBarrier(this.pub, this.timeoutMs / 2);
      this.appendScript = defineScript(this.pub, "crierHistoryAppend", 2, APPEND_SCRIPT);
      this.releaseScript = defineScript(this.pub, "crierHistoryRelease", 2, RELEASE_SCRIPT);
    } else {
      this.appendScript = defineScript(this.pub, "crierHistoryPublish", 2, PUBLISH_SCRIPT);
    }
    this.watch(this.pub);
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
      this.subs.connect();
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
   * While the listening connection is down the wish is recorded (it is
   * applied on reconnect) and the call rejects with `unavailable`, since it
   * is not live.
   */
  async subscribe(channel: string): Promise<void> {
    if (this.closed) throw new ProtocolError("unavailable", "the broker is closed");
    this.wanted.add(channel);
    await this.subs.subscribe(channel);
  }

  /** While down there is nothing to undo: the reconnect subscribes only wanted channels. */
  async unsubscribe(channel: string): Promise<void> {
    this.wanted.delete(channel);
    if (this.closed) return;
    await this.subs.unsubscribe(channel);
  }

  /**
   * Resolves once Redis acknowledged the PUBLISH (SPUBLISH on the cluster);
   * rejects with `unavailable` at once while down.
   */
  async publish(channel: string, envelope: Envelope): Promise<void> {
    this.checkPublishable();
    const text = encodeEnvelope(envelope);
    try {
      const sent = this.sharded ? this.pub.spublish(channel, text) : this.pub.publish(channel, text);
      await this.pubTrips.run(sent, `publish to ${channel}`);
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
    this.checkPublishable();
    const { head, tail } = encodeEnvelopeParts(envelope);
    const [stream, meta] = historyKeys(this.prefix, options.room);
    const what = `publish to ${options.room}`;
    let reply: unknown;
    try {
      reply = await this.pubTrips.run(
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
    if (this.replicas !== undefined && this.releaseScript !== undefined) {
      const release = this.releaseScript;
      try {
        // Refused here, it stays in history (a false failure): the next release publishes it.
        await this.pubTrips.run(this.replicas.confirm(keySlot(stream)), what);
        await this.pubTrips.run(release(stream, meta, offset, epoch, channel), what);
      } catch (err) {
        this.counters.publishFailed++;
        throw err;
      }
    }
    this.counters.published++;
    return { offset, epoch };
  }

  isReady(): boolean {
    return this.ready;
  }

  /**
   * Throws `unavailable` unless a publication can go now: while down on one
   * Redis; on the cluster while the publish client is, since one master
   * failing over leaves the other shards' rooms publishable (a publication to
   * that master's rooms then fails by itself, as `unavailable`).
   */
  private checkPublishable(): void {
    if (this.ready || (this.sharded && this.pubUp && !this.closed)) return;
    this.counters.publishFailed++;
    const why = this.closed ? "the broker is closed" : `redis at ${this.url} is unreachable`;
    throw new ProtocolError("unavailable", why);
  }

  onReadyChange(listener: ReadyListener): void {
    this.readyListeners.push(listener);
  }

  onResubscribed(listener: ResubscribedListener): void {
    this.resubscribedListeners.push(listener);
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
    this.pubTrips.settle("the broker is closed");
    this.setReady();
    await Promise.all([quit(this.pub), this.subs.close()]);
    this.handler = undefined;
  }

  /** Wires the publish connection's lifecycle to readiness. */
  private watch(conn: RedisClient): void {
    conn.on("error", (err: Error) => {
      this.lastError = err.message;
      this.log.debug({ err, connection: "pub" }, "redis connection error");
    });
    conn.on("ready", () => {
      this.pubUp = true;
      this.setReady();
    });
    conn.on("close", () => {
      // A killed server just closes the socket, with no "error" to explain it.
      if (this.lastError === "") this.lastError = "connection closed by the server";
      this.pubUp = false;
      this.pubTrips.settle(`connection to redis at ${this.url} lost`);
      this.setReady();
    });
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

  /** PINGs the connections so a silently dead socket is noticed and replaced. */
  private healthCheck(): void {
    this.subs.healthCheck();
    if (this.pub instanceof Cluster || this.pub.status !== "ready" || this.closed) return;
    const pub = this.pub;
    this.pubTrips.run(pub.ping(), "ping").catch((err: unknown) => {
      if (this.closed || pub.status !== "ready") return;
      this.log.warn({ err: messageOf(err), connection: "pub" }, "redis did not answer PING; reconnecting");
      this.lastError = `no answer to PING: ${messageOf(err)}`;
      this.pubUp = false;
      this.setReady();
      pub.disconnect(true);
    });
  }

  /** Recomputes readiness and tells listeners about a change, logging the outage's start and end. */
  private setReady(): void {
    const ready = this.started && !this.closed && this.pubUp && this.subs.isLive();
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
