// The composition root: builds every part from validated configuration, wires
// the broker to the hub and the sessions to both, and owns start and graceful
// stop. Nothing below this file reads configuration or the environment.

import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { hostname } from "node:os";
import { CloseCode, type HistoryReply, type JsonValue, type Member, type StreamPosition } from "crier-protocol";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { AuthGate, type CrierHooks } from "./auth/gate.js";
import { TokenVerifier } from "./auth/jwt.js";
import { RoomPolicy } from "./auth/policy.js";
import { createBackends, createUserConnections } from "./backends.js";
import { type Broker, ChannelNames } from "./broker/broker.js";
import { Control } from "./cluster/control.js";
import type { Membership, NodeInfo } from "./cluster/membership.js";
import { validateConfig } from "./config/load.js";
import type { CrierConfig, CrierConfigInput } from "./config/schema.js";
import { NodeConsole } from "./console/console.js";
import type { ConsoleMethods, ConsoleViews } from "./console/views.js";
import { messageOf } from "./describe-error.js";
import type { HistoryStore } from "./history/history.js";
import { Hub } from "./hub/hub.js";
import { ConnectionAdmission } from "./limits/admission.js";
import { Refusals } from "./limits/refusals.js";
import type { UserConnections } from "./limits/user-connections.js";
import { UserConnectionLimit } from "./limits/user-limit.js";
import { createLogger } from "./log.js";
import { createMetrics, proxyMetrics } from "./metrics.js";
import type { PresenceStats, PresenceStore } from "./presence/presence.js";
import { PresenceTracker } from "./presence/tracker.js";
import { ProxyClient } from "./proxy/client.js";
import { BackendProxy } from "./proxy/proxy.js";
import { Recovery } from "./recovery/recovery.js";
import { redactUrl } from "./redis/connection.js";
import { isClusterUrl } from "./redis/url.js";
import { RoomQueries } from "./service/room-queries.js";
import { type DisconnectTarget, type PublishResult, RoomService } from "./service/room-service.js";
import type { SessionHost, SessionSettings, SessionView } from "./session/host.js";
import { Session } from "./session/session.js";
import { WriteBatcher } from "./session/write-batcher.js";
import { type ApiHost, HttpApi } from "./transport/http-api.js";
import { originPolicy } from "./transport/origin.js";
import { SseEndpoint, type SseMethods } from "./transport/sse-endpoint.js";
import { WsConnection } from "./transport/ws-connection.js";
import { WsEndpoint } from "./transport/ws-endpoint.js";

/** How long a request to another instance (cluster/control.ts) waits for its reply. */
const CONTROL_TIMEOUT_MS = 2000;

/** Every feature's requests between instances (cluster/control.ts): the console's views and the HTTP fallback's forwarded frames. */
type ClusterMethods = ConsoleMethods & SseMethods;

export type { CrierHooks };

export interface CrierOptions {
  /** Settings as in the config file (validated here), or the result of loadConfig/validateConfig. */
  config?: CrierConfigInput | CrierConfig;
  hooks?: CrierHooks;
  /** A pino logger; by default one is made at config.logLevel and config.logFormat, writing to stdout. */
  logger?: Logger;
  /** A broker to use instead of the one config.redis selects (tests, custom backplanes). */
  broker?: Broker;
}

export class CrierNode implements SessionHost, ApiHost {
  readonly config: CrierConfig;
  readonly nodeId: string;
  readonly logger: Logger;
  readonly settings: SessionSettings;
  readonly hub: Hub;
  readonly batcher: WriteBatcher;
  readonly recovery: Recovery;
  readonly rooms: RoomService;
  readonly queries: RoomQueries;
  readonly presence: PresenceTracker;
  readonly auth: AuthGate;
  readonly limits: UserConnectionLimit<SessionView>;
  /** The application's backend, when `proxy` is configured. */
  readonly proxy: BackendProxy | undefined;
  /** The HTTP API key: configured, or generated at start (see apiKeyGenerated). */
  readonly apiKey: string;
  readonly apiKeyGenerated: boolean;

  private readonly broker: Broker;
  private readonly membership: Membership;
  /** Requests to other instances and their replies, over the backplane. */
  private readonly control: Control<ClusterMethods>;
  private readonly console: NodeConsole;
  /** Present when some namespace keeps history. */
  private readonly historyStore: HistoryStore | undefined;
  /** Present when some namespace enables presence or join/leave events. */
  private readonly presenceStore: PresenceStore | undefined;
  private port: number;
  private readonly names: ChannelNames;
  private readonly policy: RoomPolicy;
  private readonly verifier: TokenVerifier | undefined;
  private readonly endpoint: WsEndpoint;
  private readonly sse: SseEndpoint;
  private readonly api: HttpApi;
  private readonly refusals: Refusals;
  private readonly userConnections: UserConnections;
  private metricsServer: Server | undefined;
  private readonly sessions = new Set<SessionView>();
  private readonly closes = new Map<number, number>();
  private readonly registry: Registry;
  private readonly startedAt = Date.now();
  private server: Server | undefined;
  private started = false;
  private closing: Promise<void> | undefined;

  private constructor(options: CrierOptions, config: CrierConfig) {
    this.config = config;
    this.nodeId =
      config.nodeId ??
      `${hostname()
        .replace(/[^A-Za-z0-9_.:-]/g, "-")
        .slice(0, 40)}-${randomBytes(3).toString("hex")}`;
    this.logger = (options.logger ?? createLogger(config)).child({ node: this.nodeId });
    this.batcher = new WriteBatcher(config.delivery.coalesceMs);
    this.apiKeyGenerated = config.apiKey === undefined;
    this.apiKey = config.apiKey ?? randomBytes(24).toString("base64url");
    this.settings = {
      connectTimeoutMs: config.timeouts.connectMs,
      pingIntervalMs: config.timeouts.pingMs,
      pongTimeoutMs: config.timeouts.pongMs,
      maxFrameBytes: config.limits.maxFrameBytes,
      commandsPerSecond: config.limits.commandsPerSecond,
      maxSubscriptions: config.limits.maxSubscriptions,
      outboundQueueBytes: config.limits.outboundQueueBytes,
      maxInfoBytes: config.limits.maxInfoBytes,
      clientSend: config.clientSend,
    };
    // On Redis Cluster a channel carries its room's (or user's) hash tag.
    this.names = new ChannelNames(config.redisPrefix, config.redis !== undefined && isClusterUrl(config.redis));
    this.port = config.port;
    const backends = createBackends(config, this.nodeId, this.logger, options.broker);
    this.broker = backends.broker;
    this.membership = backends.membership;
    this.historyStore = backends.history;
    this.presenceStore = backends.presence;
    this.policy = new RoomPolicy(config.namespaces);
    this.rooms = new RoomService(this.broker, this.names, this.policy, this.nodeId, (ms) => this.console.published(ms));
    const historyOptions = (room: string) => this.rooms.historyOptions(room);
    this.recovery = new Recovery(this.historyStore, historyOptions);
    this.queries = new RoomQueries(this.policy, this.historyStore, this.presenceStore, historyOptions);
    this.hub = new Hub(this.broker, this.names, this.logger, this.recovery);
    this.control = new Control({
      nodeId: this.nodeId,
      broker: this.broker,
      names: this.names,
      timeoutMs: CONTROL_TIMEOUT_MS,
      logger: this.logger,
    });
    this.console = new NodeConsole(this.control, {
      hub: this.hub,
      sessions: () => this.sessions,
      connections: () => this.sessions.size,
      broker: () => this.broker.stats(),
      ready: () => this.isReady(),
      features: (room) => ({
        history: this.rooms.historyOptions(room) !== undefined,
        presence: this.policy.options(room).presence && this.presenceStore !== undefined,
      }),
      nodes: async () => (await this.membership.nodes()).map((node) => node.id),
    });
    this.presence = new PresenceTracker({
      nodeId: this.nodeId,
      store: this.presenceStore,
      settings: (room) => this.policy.options(room),
      announce: (room, envelope) => this.broker.publish(this.names.room(room), envelope),
      logger: this.logger,
    });
    this.refusals = new Refusals(this.logger);
    this.userConnections = createUserConnections(config, this.nodeId, this.logger);
    this.limits = new UserConnectionLimit(this.userConnections, config.limits.maxConnectionsPerUser, this.refusals);
    const keyed = TokenVerifier.configured(config.jwt);
    this.verifier = keyed ? new TokenVerifier(config.jwt) : undefined;
    this.registry = createMetrics(
      {
        connections: () => this.sessions.size,
        hub: this.hub,
        broker: () => this.broker.stats(),
        brokerChannels: () => this.broker.channelCount(),
        ready: () => this.isReady(),
        closes: () => this.closes,
        refusals: () => this.refusals.totals(),
      },
      { node: this.nodeId },
    );
    this.proxy = this.createProxy();
    this.auth = new AuthGate(
      options.hooks ?? {},
      this.verifier,
      config.allowAnonymous ?? !keyed,
      this.policy,
      this.proxy,
    );
    this.endpoint = new WsEndpoint(
      {
        path: config.path,
        maxFrameBytes: config.limits.maxFrameBytes,
        originAllowed: originPolicy(config.allowedOrigins),
        admission: new ConnectionAdmission(config.limits, this.refusals),
        trustProxy: config.trustProxy,
        refusals: this.refusals,
        logger: this.logger,
        onRefused: (kind, detail) => this.console.warn(kind, detail),
      },
      (ws, socket, request) => {
        const connection = new WsConnection(ws, socket, {
          batcher: this.batcher,
          outboundQueueBytes: config.limits.outboundQueueBytes,
        });
        this.sessions.add(new Session(connection, request, this));
      },
    );
    this.sse = new SseEndpoint(
      {
        nodeId: this.nodeId,
        allowedOrigins: config.allowedOrigins,
        maxConnectionsPerIp: config.limits.maxConnectionsPerIp,
        maxBodyBytes: config.limits.maxHttpBodyBytes,
        batcher: this.batcher,
        outboundQueueBytes: config.limits.outboundQueueBytes,
        logger: this.logger,
      },
      {
        open: (connection, request) => this.sessions.add(new Session(connection, request, this)),
        forward: async (node, request) => (await this.control.ask(node, "sse.frames", request)).delivered,
      },
    );
    this.control.handle("sse.frames", (request) => this.sse.receiveForwarded(request));

    this.api = new HttpApi(this, {
      apiKeys: [this.apiKey, ...(config.apiKeys ?? [])],
      maxBodyBytes: config.limits.maxHttpBodyBytes,
      logger: this.logger,
      dashboard: config.dashboard,
      metrics: config.metricsPort === undefined,
      metricsRequireKey: config.metricsRequireKey,
      authFailuresPerMinute: config.limits.apiAuthFailuresPerMinute,
      trustProxy: config.trustProxy,
      refusals: this.refusals,
    });
  }

  private createProxy(): BackendProxy | undefined {
    const config = this.config.proxy;
    if (config === undefined) return undefined;
    const observe = proxyMetrics(this.registry);
    const client = new ProxyClient({
      timeoutMs: config.timeoutMs,
      maxConcurrency: config.maxConcurrency,
      logger: this.logger.child({ component: "proxy" }),
      observe,
    });
    return new BackendProxy(config, client, {
      headers: config.headers,
      connectWithToken: config.connectWithToken,
      namespaceOf: (room) => this.policy.options(room),
    });
  }

  /** Validates the configuration, connects the backplane and returns a node ready to attach or listen. */
  static async create(options: CrierOptions = {}): Promise<CrierNode> {
    const config = validateConfig(options.config ?? {});
    const node = new CrierNode(options, config);
    await node.start();
    return node;
  }

  private async start(): Promise<void> {
    await this.verifier?.ready();
    try {
      await this.broker.start((_channel, envelope) => {
        if (envelope.kind === "request" || envelope.kind === "reply") this.control.receive(envelope);
        else this.hub.deliver(envelope);
      });
      await this.historyStore?.start();
      await this.presenceStore?.start();
      await this.userConnections.start();
    } catch (error) {
      // Name the setting to fix: an unreachable engine is usually a wrong URL.
      const url = this.config.redis;
      if (url === undefined) throw error;
      throw new Error(`config key "redis" (${redactUrl(url)}): ${messageOf(error)}`);
    }
    this.broker.onReadyChange((ready) => {
      // Rooms with history check whether they missed anything while disconnected.
      if (ready) this.hub.resync();
      if (ready) this.logger.info("backplane reachable: ready");
      else this.logger.warn("backplane unreachable: not ready; publishes get 'unavailable' until it returns");
      this.console.warn(ready ? "backplane_back" : "backplane_lost", ready ? "reachable again" : "unreachable");
    });
    // A room's channel that moved to another shard (resharding) checks what it missed, as after an outage.
    this.broker.onResubscribed?.((channels) => this.hub.resync(new Set(channels)));
    await this.broker.subscribe(this.names.control());
    await this.control.start();
    await this.membership.start(() => this.nodeInfo());
    this.membership.onRejoin(() => {
      // Other instances may have pruned this one's presence entries while it was out of the cluster.
      this.presenceStore?.rewrite().catch((error: unknown) => {
        this.logger.warn({ err: error }, "could not write presence entries again after rejoining the cluster");
      });
      this.userConnections.rewrite().catch((error: unknown) => {
        this.logger.warn(
          { err: error },
          "could not write per-user connection counts again after rejoining the cluster",
        );
      });
    });
    if (this.config.allowedOrigins?.includes("*")) {
      this.logger.warn(
        'allowedOrigins has "*": pages of any site may open connections with their visitors\' cookies (list your origins instead)',
      );
    }
    if (this.verifier === undefined && this.auth.allowAnonymous) {
      this.logger.warn("no JWT key configured: anonymous connections are allowed (set jwt.secret to require tokens)");
    }
    if (this.apiKeyGenerated) {
      this.logger.warn("no API key configured: generated a random one for this run (set apiKey or CRIER_API_KEY)");
    }
    this.console.start();
    this.started = true;
  }

  // ---- embedding -----------------------------------------------------------

  /** Handles a WebSocket upgrade on the configured path; returns false for other paths. */
  handleUpgrade(request: IncomingMessage, socket: Socket, head: Buffer): boolean {
    return this.endpoint.handleUpgrade(request, socket, head);
  }

  /** Handles /healthz, /readyz, /api/* and the HTTP fallback (/sse, /emulation); returns false for other paths. */
  handleRequest(request: IncomingMessage, response: ServerResponse): boolean {
    return this.sse.handle(request, response) || this.api.handle(request, response);
  }

  /**
   * Serves crier from an existing HTTP server: WebSocket upgrades on the
   * configured path, and the HTTP API ahead of the server's own request
   * handlers, which still see every other request.
   */
  attach(server: Server): void {
    const existing = server.listeners("request") as ((req: IncomingMessage, res: ServerResponse) => void)[];
    server.removeAllListeners("request");
    server.on("request", (request: IncomingMessage, response: ServerResponse) => {
      if (this.handleRequest(request, response)) return;
      if (existing.length === 0) {
        response.writeHead(404, { "Content-Type": "application/json" });
        response.end(JSON.stringify({ error: { code: "bad_request", message: "not found" } }));
        return;
      }
      for (const listener of existing) listener.call(server, request, response);
    });
    server.on("upgrade", (request: IncomingMessage, socket: Socket, head: Buffer) => {
      if (!this.handleUpgrade(request, socket, head) && server.listeners("upgrade").length === 1) socket.destroy();
    });
  }

  /** Listens on config.host:config.port with a server of its own. */
  async listen(): Promise<AddressInfo> {
    const server = createServer();
    // Keep-alive sockets of API callers should not hold a shutdown for long.
    server.keepAliveTimeout = 5000;
    // A client that dribbles its headers or body (slowloris) is cut off, not waited for.
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    this.attach(server);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.config.port, this.config.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    this.port = address.port;
    this.logger.info({ port: address.port, host: address.address, path: this.config.path }, "crier listening");
    if (this.config.metricsPort !== undefined) await this.listenMetrics(this.config.metricsPort);
    return address;
  }

  /** The port of the /metrics listener (metricsPort), once listening. */
  metricsAddress(): AddressInfo | undefined {
    return (this.metricsServer?.address() ?? undefined) as AddressInfo | undefined;
  }

  private async listenMetrics(port: number): Promise<void> {
    const server = createServer((request, response) => {
      if ((request.url ?? "/").split("?")[0] === "/metrics") this.api.serveMetrics(request, response);
      else response.writeHead(404, { "Content-Type": "text/plain" }).end("only /metrics here\n");
    });
    this.metricsServer = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, this.config.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.logger.info({ port: (server.address() as AddressInfo).port }, "metrics listening");
  }

  // ---- publishing (library API) --------------------------------------------

  /** Publishes `data` to `room` from the backend. */
  publish(room: string, data: JsonValue): Promise<PublishResult> {
    return this.rooms.publish(room, JSON.stringify(data));
  }

  /** Sends `data` to every connection of `user`, cluster-wide. */
  send(user: string, data: JsonValue): Promise<void> {
    return this.rooms.send(user, JSON.stringify(data));
  }

  // ---- ApiHost ---------------------------------------------------------------

  publishJson(room: string, dataJson: string): Promise<PublishResult> {
    return this.rooms.publish(room, dataJson);
  }

  sendJson(user: string, dataJson: string): Promise<void> {
    return this.rooms.send(user, dataJson);
  }

  disconnect(target: DisconnectTarget, code: number, reason: string): Promise<void> {
    return this.rooms.disconnect(target, code, reason);
  }

  unsubscribe(user: string, room: string): Promise<void> {
    return this.rooms.unsubscribe(user, room);
  }

  roomPresence(room: string): Promise<Member[]> {
    return this.queries.presence(room);
  }

  roomPresenceStats(room: string): Promise<PresenceStats> {
    return this.queries.presenceStats(room);
  }

  history(room: string, since: StreamPosition | undefined, limit: number | undefined): Promise<HistoryReply> {
    return this.queries.history(room, since, limit);
  }

  /** This instance and every live one in the cluster. */
  async info(): Promise<{ node: string; nodes: NodeInfo[] }> {
    return { node: this.nodeId, nodes: await this.membership.nodes() };
  }

  private nodeInfo(): NodeInfo {
    return {
      id: this.nodeId,
      address: `${this.config.host ?? hostname()}:${this.port}`,
      connections: this.sessions.size,
      rooms: this.hub.stats().rooms,
      startedAt: this.startedAt,
      updatedAt: Date.now(),
      load: performance.eventLoopUtilization().utilization,
    };
  }

  isReady(): boolean {
    return (
      this.started &&
      this.closing === undefined &&
      this.broker.isReady() &&
      (this.historyStore?.isReady() ?? true) &&
      (this.presenceStore?.isReady() ?? true)
    );
  }

  warning(kind: "rate_limited" | "auth_failed", detail: string): void {
    this.console.warn(kind, detail);
  }

  /** The console's cluster-wide views (GET /api/stats, /api/rooms, …). */
  get views(): ConsoleViews {
    return this.console.views;
  }

  sessionClosed(session: SessionView): void {
    this.sessions.delete(session);
    this.limits.release(session);
    const code = session.closeCode ?? CloseCode.Abnormal;
    if (code === CloseCode.SlowConsumer) {
      this.console.warn("slow_consumer", `client ${session.id} (user '${session.user}') closed with 4503`);
    }
    this.closes.set(code, (this.closes.get(code) ?? 0) + 1);
  }

  /** Prometheus text of this instance's metrics. */
  async metrics(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** Open connections on this instance. */
  connectionCount(): number {
    return this.sessions.size;
  }

  // ---- shutdown ------------------------------------------------------------

  /**
   * Stops accepting connections, closes every client with 4500 (so SDKs
   * reconnect elsewhere and recover), then disconnects the backplane. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.endpoint.stopAccepting();
    this.sse.stopAccepting();
    const server = this.server;
    const stopped =
      server === undefined ? Promise.resolve() : new Promise<void>((resolve) => server.close(() => resolve()));
    for (const session of [...this.sessions]) session.close(CloseCode.ShuttingDown, "server shutting down");
    server?.closeIdleConnections();
    // A socket that does not finish the close handshake soon is dropped.
    const deadline = setTimeout(() => {
      for (const session of [...this.sessions]) session.terminate();
      server?.closeAllConnections();
    }, 2000);
    deadline.unref();
    await stopped;
    clearTimeout(deadline);
    this.endpoint.close();
    this.console.close();
    const metricsServer = this.metricsServer;
    if (metricsServer !== undefined) await new Promise<void>((resolve) => metricsServer.close(() => resolve()));
    await this.userConnections.close();
    // The closed sessions' leaves: entries removed and leave events published before disconnecting.
    await this.presence.drain();
    await this.membership.close();
    await this.historyStore?.close();
    await this.presenceStore?.close();
    this.control.close();
    await this.broker.close();
    this.logger.info("crier stopped");
  }
}
