// The backend proxy (docs/backend.md, docs/protocol.md "Backend proxy"): the
// application's own backend decides who a connection is, whether it may
// subscribe or publish, what it publishes, and answers its RPCs. Each kind is
// a URL (subscribe and publish overridable per namespace); the request bodies
// and answers are docs/protocol.md's. Built by node.ts from `proxy` config and
// consulted by the auth gate and the session.

import type { IncomingMessage } from "node:http";
import { type JsonObject, type JsonValue, ProtocolError } from "crier-protocol";
import type { Identity } from "../auth/identity.js";
import type { CrierConfig, NamespaceConfig } from "../config/schema.js";
import { ProxyClient, type ProxyClientOptions, type ProxyKind } from "./client.js";

export interface ProxyUrls {
  connect?: string;
  refresh?: string;
  subscribe?: string;
  publish?: string;
  rpc?: string;
}

/** Who is asking: the connection's id, user and the headers forwarded from its request. */
export interface ProxyCaller {
  readonly id: string;
  readonly user: string;
  readonly forwarded: Readonly<Record<string, string>>;
}

export interface ConnectContext {
  client: string;
  transport: string;
  protocol: string;
  remoteAddr: string;
  forwarded: Readonly<Record<string, string>>;
}

/** The proxy that `proxy` (the validated config section) describes, calling with keep-alive connections. */
export function createBackendProxy(
  config: NonNullable<CrierConfig["proxy"]>,
  options: Pick<ProxyClientOptions, "logger" | "observe"> & { namespaceOf: (room: string) => NamespaceConfig },
): BackendProxy {
  const client = new ProxyClient({
    timeoutMs: config.timeoutMs,
    maxConcurrency: config.maxConcurrency,
    logger: options.logger,
    ...(options.observe === undefined ? {} : { observe: options.observe }),
  });
  return new BackendProxy(config, client, {
    headers: config.headers,
    connectWithToken: config.connectWithToken,
    namespaceOf: options.namespaceOf,
  });
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

export class BackendProxy {
  private readonly urls: ProxyUrls;
  private readonly client: ProxyClient;
  private readonly headerNames: readonly string[];
  private readonly namespaceOf: (room: string) => NamespaceConfig;
  /** Whether a connect whose token verifies still goes to the connect proxy. */
  readonly connectWithToken: boolean;

  constructor(
    urls: ProxyUrls,
    client: ProxyClient,
    options: { headers: readonly string[]; connectWithToken: boolean; namespaceOf: (room: string) => NamespaceConfig },
  ) {
    this.urls = urls;
    this.client = client;
    this.headerNames = options.headers.map((name) => name.toLowerCase());
    this.connectWithToken = options.connectWithToken;
    this.namespaceOf = options.namespaceOf;
  }

  has(kind: "connect" | "refresh" | "rpc"): boolean {
    return this.urls[kind] !== undefined;
  }

  /** The configured headers of `request`, to send along with every call for this connection. */
  forwardedHeaders(request: IncomingMessage): Readonly<Record<string, string>> {
    if (this.headerNames.length === 0) return NO_HEADERS;
    const forwarded: Record<string, string> = {};
    for (const name of this.headerNames) {
      const value = request.headers[name];
      if (typeof value === "string") forwarded[name] = value;
      else if (Array.isArray(value)) forwarded[name] = value.join(", ");
    }
    return forwarded;
  }

  /** The connect proxy's identity for a connect; `token` and `info` as the client sent them. */
  async connect(
    context: ConnectContext,
    command: { name?: string; info?: JsonObject; token?: string },
  ): Promise<Identity> {
    const body: JsonObject = {
      client: context.client,
      transport: context.transport,
      protocol: context.protocol,
      remoteAddr: context.remoteAddr,
    };
    if (command.name !== undefined) body.name = command.name;
    if (command.info !== undefined) body.info = command.info;
    if (command.token !== undefined) body.token = command.token;
    const result = await this.call("connect", this.urls.connect, body, context.forwarded);
    const user = result.user;
    if (typeof user !== "string") throw invalid("connect", "'result.user' must be a string (\"\" for anonymous)");
    const identity: Identity = { user, fromProxy: true };
    if (result.info !== undefined) {
      if (!isObject(result.info)) throw invalid("connect", "'result.info' must be an object");
      identity.info = result.info;
    }
    if (result.expireAt !== undefined) identity.expiresAt = expiry("connect", result.expireAt);
    if (result.rooms !== undefined) {
      if (!Array.isArray(result.rooms) || !result.rooms.every((room) => typeof room === "string")) {
        throw invalid("connect", "'result.rooms' must be an array of room names");
      }
      identity.subs = result.rooms as string[];
    }
    return identity;
  }

  /** A new expiry (ms since epoch) from the refresh proxy. */
  async refresh(caller: ProxyCaller): Promise<number> {
    const result = await this.call(
      "refresh",
      this.urls.refresh,
      { client: caller.id, user: caller.user },
      caller.forwarded,
    );
    if (result.expireAt === undefined) throw invalid("refresh", "'result.expireAt' is required");
    return expiry("refresh", result.expireAt);
  }

  /** Whether `room`'s subscriptions are decided by a subscribe proxy. */
  decidesSubscribe(room: string): boolean {
    return this.urlFor("subscribe", room) !== undefined;
  }

  decidesPublish(room: string): boolean {
    return this.urlFor("publish", room) !== undefined;
  }

  /** Resolves when the backend allows `caller` into `room`; rejects with its error or disconnect. */
  async subscribe(caller: ProxyCaller, room: string, info: JsonObject | undefined): Promise<void> {
    const body: JsonObject = { client: caller.id, user: caller.user, room };
    if (info !== undefined) body.info = info;
    await this.call("subscribe", this.urlFor("subscribe", room), body, caller.forwarded);
  }

  /** The data to publish: as sent, or what the backend put in its place. */
  async publish(caller: ProxyCaller, room: string, data: JsonValue): Promise<JsonValue> {
    const result = await this.call(
      "publish",
      this.urlFor("publish", room),
      { client: caller.id, user: caller.user, room, data },
      caller.forwarded,
    );
    return "data" in result && result.data !== undefined ? result.data : data;
  }

  async rpc(caller: ProxyCaller, method: string, data: JsonValue): Promise<JsonValue> {
    if (this.urls.rpc === undefined) {
      throw new ProtocolError("bad_request", "rpc is not available: this server has no rpc proxy (proxy.rpc)");
    }
    const result = await this.call(
      "rpc",
      this.urls.rpc,
      { client: caller.id, user: caller.user, method, data },
      caller.forwarded,
    );
    return result.data ?? null;
  }

  private urlFor(kind: "subscribe" | "publish", room: string): string | undefined {
    return this.namespaceOf(room).proxy?.[kind] ?? this.urls[kind];
  }

  private call(
    kind: ProxyKind,
    url: string | undefined,
    body: JsonObject,
    headers: Readonly<Record<string, string>>,
  ): Promise<JsonObject> {
    if (url === undefined) throw new ProtocolError("internal", `no ${kind} proxy is configured`);
    return this.client.call(kind, url, body, headers);
  }
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A `result` that does not say what docs/protocol.md asks of it fails closed like any unreadable answer. */
function invalid(kind: ProxyKind, why: string): ProtocolError {
  return new ProtocolError("unavailable", `the application's ${kind} proxy gave an unusable answer: ${why}`);
}

function expiry(kind: ProxyKind, value: JsonValue): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw invalid(kind, "'result.expireAt' must be unix seconds");
  }
  return value * 1000;
}
