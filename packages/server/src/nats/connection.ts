// Shared by the NATS-backed parts (broker, history, presence, membership):
// how the configured URL, credentials and TLS become a connection; readiness
// followed through the client's status events; failures turned into
// `unavailable`; and the names crier uses in NATS (subjects, streams, buckets).

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { ProtocolError } from "crier-protocol";
import {
  type ConnectionOptions,
  connect,
  credsAuthenticator,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
  NatsError,
} from "nats";
import { type Logger, pino } from "pino";
import { messageOf } from "../describe-error.js";
import { parseNatsUrl, redactNatsUrl } from "./url.js";

export interface NatsTlsFiles {
  /** PEM file of the CA that signed the server's certificate. */
  ca?: string;
  /** PEM client certificate and key, for servers that verify clients. */
  cert?: string;
  key?: string;
}

export interface NatsOptions {
  /** nats:// or tls:// URL, with servers separated by commas (see url.ts). */
  url: string;
  /** A .creds file (user JWT and NKey seed), for servers using decentralized auth. */
  credsFile?: string;
  tls?: NatsTlsFiles;
  logger?: Logger;
  /** Bound on connecting and on every request (default 2000). */
  timeoutMs?: number;
}

export interface JetStream {
  manager: JetStreamManager;
  client: JetStreamClient;
}

/** A component's connection to NATS and whether it is usable now. */
export class NatsLink {
  readonly url: string;
  readonly log: Logger;
  readonly timeoutMs: number;
  private readonly options: NatsOptions;
  private readonly component: string;
  private conn: NatsConnection | undefined;
  private js: JetStream | undefined;
  private connected = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly listeners: Array<(up: boolean) => void> = [];

  constructor(component: string, options: NatsOptions) {
    parseNatsUrl(options.url); // throws naming what is wrong, before anything connects
    this.options = options;
    this.component = component;
    this.url = redactNatsUrl(options.url);
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.log = (options.logger ?? pino({ enabled: false })).child({ component, nats: this.url });
  }

  /**
   * Connects; rejects naming the URL and the reason within `timeoutMs` if NATS
   * cannot be reached, since an instance that can never be ready is worse
   * than one that fails to start. Outages after this are survived by the
   * client's reconnects (forever, with jitter), reported as readiness.
   */
  async start(timeoutMs = 5000): Promise<NatsConnection> {
    if (this.conn !== undefined) return this.conn;
    if (this.closed) throw new ProtocolError("unavailable", `${this.component}: closed`);
    let conn: NatsConnection;
    try {
      conn = await connect(connectionOptions(this.options, this.component, timeoutMs));
    } catch (err) {
      throw new Error(`${this.component}: cannot reach NATS at ${this.url} (the \`nats\` setting): ${describe(err)}`);
    }
    if (this.closed) {
      await conn.close();
      throw new ProtocolError("unavailable", `${this.component}: closed while starting`);
    }
    this.conn = conn;
    this.setConnected(true);
    void this.follow(conn);
    return conn;
  }

  /** The connection while it is usable; rejects with `unavailable` otherwise, never waiting for a reconnect. */
  live(): NatsConnection {
    const conn = this.conn;
    if (conn === undefined || !this.connected || this.closed) {
      throw new ProtocolError(
        "unavailable",
        this.closed ? `${this.component}: closed` : `NATS at ${this.url} is unreachable`,
      );
    }
    return conn;
  }

  /** JetStream handles on the live connection (no account check: start() made the first request). */
  async jetstream(): Promise<JetStream> {
    const conn = this.live();
    if (this.js === undefined) {
      const options = { timeout: this.timeoutMs };
      const manager = await conn.jetstreamManager({ ...options, checkAPI: false });
      this.js = { manager, client: conn.jetstream(options) };
    }
    return this.js;
  }

  /** The connection, whether or not it is up now (for subscriptions, which the client restores on reconnect). */
  current(): NatsConnection | undefined {
    return this.closed ? undefined : this.conn;
  }

  isReady(): boolean {
    return this.connected && !this.closed;
  }

  onChange(listener: (up: boolean) => void): void {
    this.listeners.push(listener);
  }

  /** Turns a failed request into `unavailable` (or `internal` for a reply that means a bug), naming what failed. */
  failure(what: string, err: unknown): ProtocolError {
    if (err instanceof ProtocolError) return err;
    const text = describe(err);
    if (/no responders|timeout|disconnect|closed|draining|503/i.test(text) || !this.isReady()) {
      return new ProtocolError("unavailable", `${what} failed: NATS at ${this.url}: ${text}`);
    }
    this.log.error({ err: text }, `${what} failed`);
    return new ProtocolError("internal", `${what} failed: ${text}`);
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.setConnected(false);
    const conn = this.conn;
    if (conn !== undefined && !conn.isClosed()) await conn.close().catch(() => {});
  }

  private async follow(conn: NatsConnection): Promise<void> {
    for await (const status of conn.status()) {
      if (status.type === "disconnect") this.setConnected(false);
      else if (status.type === "reconnect") this.setConnected(true);
      else if (status.type === "error") this.log.debug({ err: String(status.data) }, "nats error");
    }
    this.setConnected(false);
  }

  private setConnected(up: boolean): void {
    const next = up && !this.closed;
    if (next === this.connected) return;
    this.connected = next;
    if (!this.closed) {
      if (next) this.log.info("nats connection up");
      else this.log.warn("nats connection lost; reconnecting");
    }
    for (const listener of [...this.listeners]) {
      try {
        listener(next);
      } catch (err) {
        this.log.error({ err }, "nats readiness listener threw");
      }
    }
  }
}

/** JetStream's error code for a failed Nats-Expected-Last-Subject-Sequence check (someone wrote first). */
export const WRONG_LAST_SEQUENCE = 10071;
/** JetStream's error code for a message that is not there (any more). */
export const NO_MESSAGE = 10037;

/** The JetStream API error code of a failed request, when it has one. */
export function apiCode(err: unknown): number | undefined {
  return err instanceof NatsError ? err.api_error?.err_code : undefined;
}

/**
 * The keys of a KV bucket that have a stored message (a value, or a delete
 * marker: check the entry's operation), matching `filter`. One stream-info
 * request, bounded by the link's timeout, where the client's keys() would
 * start a consumer and wait on it.
 */
export async function bucketKeys(link: NatsLink, bucket: string, filter = ">"): Promise<string[]> {
  const { manager } = await link.jetstream();
  const prefix = `$KV.${bucket}.`;
  const info = await manager.streams.info(`KV_${bucket}`, { subjects_filter: `${prefix}${filter}` });
  return Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefix.length));
}

function connectionOptions(options: NatsOptions, component: string, timeoutMs: number): ConnectionOptions {
  const target = parseNatsUrl(options.url);
  const opts: ConnectionOptions = {
    servers: target.servers,
    name: `crier-${component}`,
    timeout: timeoutMs,
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 250,
    pingInterval: 5000,
    maxPingOut: 2,
  };
  if (target.user !== undefined) opts.user = target.user;
  if (target.pass !== undefined) opts.pass = target.pass;
  if (target.token !== undefined) opts.token = target.token;
  if (options.credsFile !== undefined) {
    let creds: Uint8Array;
    try {
      creds = readFileSync(options.credsFile);
    } catch (err) {
      throw new Error(`natsCreds: cannot read ${options.credsFile}: ${messageOf(err)}`);
    }
    opts.authenticator = credsAuthenticator(creds);
  }
  const files = options.tls ?? {};
  if (target.tls || files.ca !== undefined || files.cert !== undefined) {
    opts.tls = {};
    if (files.ca !== undefined) opts.tls.caFile = files.ca;
    if (files.cert !== undefined) opts.tls.certFile = files.cert;
    if (files.key !== undefined) opts.tls.keyFile = files.key;
  }
  return opts;
}

function describe(err: unknown): string {
  const text = messageOf(err);
  if (/CONNECTION_REFUSED/i.test(text)) return "connection refused";
  return text;
}

// ---- names -----------------------------------------------------------------

const SAFE = /^[A-Za-z0-9_\-/]$/;

/**
 * Any text as one token that is valid both in a subject and in a KV key:
 * characters outside A-Z a-z 0-9 _ - / become =HH per UTF-8 byte (`=` too), so
 * `.` `*` `>` (special in subjects) and `:` `@` (not allowed in KV keys) never
 * appear raw, and distinct texts stay distinct. Empty text is "=".
 */
export function encodeToken(text: string): string {
  if (text === "") return "=";
  let out = "";
  for (const char of text) {
    if (SAFE.test(char)) out += char;
    else for (const byte of Buffer.from(char, "utf8")) out += `=${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** Encoded tokens longer than this are hashed by boundedToken. */
const LONGEST_TOKEN = 128;

/**
 * `text` as one token of bounded length, for keys that are only compared, never
 * decoded (a user id can be any length, and a subject must fit a protocol line):
 * encodeToken(text) when that is short, else `=h` and its SHA-256. An encoding
 * never contains `=h` (its `=` is always followed by two hex digits), so
 * distinct texts stay distinct.
 */
export function boundedToken(text: string): string {
  const token = encodeToken(text);
  if (token.length <= LONGEST_TOKEN) return token;
  return `=h${createHash("sha256").update(text).digest("hex")}`;
}

/** The inverse of encodeToken. */
export function decodeToken(token: string): string {
  if (token === "=") return "";
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    if (token[i] === "=") {
      bytes.push(Number.parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(token.charCodeAt(i));
  }
  return Buffer.from(bytes).toString("utf8");
}

/** The subjects, stream and buckets of one deployment (one key prefix). */
export interface NatsNames {
  /** Core subject of a broker channel (rooms, users, control). */
  live(channel: string): string;
  /** The subject a room's history is appended on (republished by the stream to live(channel)). */
  history(channel: string): string;
  /** The subject of a room's epoch marker, for a room read before its first message. */
  epoch(channel: string): string;
  /** The subject a sweep's leaves and a rewrite's joins are published on (republished to live(channel)). */
  presenceEvent(channel: string): string;
  stream: string;
  historySubjects: string;
  epochSubjects: string;
  liveSubjects: string;
  presenceBucket: string;
  /** Which instances have presence entries, and who sweeps which gone one (presence/nats-bucket.ts). */
  presenceSweepBucket: string;
  /** The stream of presence events (presence/nats-bucket.ts), capturing presenceEventSubjects. */
  presenceEvents: string;
  presenceEventSubjects: string;
  nodesBucket: string;
  /** Per-user connection counts (limits/user-connections-nats.ts). */
  userConnectionsBucket: string;
}

/**
 * Names derived from the key prefix (`redisPrefix`), so deployments with
 * different prefixes share a NATS without meeting. Stream and bucket names
 * allow only A-Z a-z 0-9 _ -; a prefix that needed changing gets a short hash
 * so two prefixes never collide.
 */
export function natsNames(prefix: string): NatsNames {
  const plain = prefix.replace(/[^A-Za-z0-9_-]/g, "_");
  const base = `${plain}${createHash("sha256").update(prefix).digest("hex").slice(0, 6)}`;
  const scope = encodeToken(prefix);
  const live = `crier.live.${scope}`;
  const history = `crier.hist.${scope}`;
  const epoch = `crier.epoch.${scope}`;
  const presenceEvent = `crier.pres.${scope}`;
  return {
    live: (channel) => `${live}.${encodeToken(channel)}`,
    history: (channel) => `${history}.${encodeToken(channel)}`,
    epoch: (channel) => `${epoch}.${encodeToken(channel)}`,
    presenceEvent: (channel) => `${presenceEvent}.${encodeToken(channel)}`,
    stream: `${base}_history`,
    historySubjects: `${history}.*`,
    epochSubjects: `${epoch}.*`,
    liveSubjects: `${live}.*`,
    presenceBucket: `${base}_presence`,
    presenceSweepBucket: `${base}_presence_sweeps`,
    presenceEvents: `${base}_presence_events`,
    presenceEventSubjects: `${presenceEvent}.*`,
    nodesBucket: `${base}_nodes`,
    userConnectionsBucket: `${base}_userconns`,
  };
}
