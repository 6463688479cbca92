// The composition root: builds every part from validated configuration, wires
// the broker to the hub and the sessions to both, and owns start and graceful
// stop. Nothing below this file reads configuration or the environment.

import { randomBytes } from "node:crypto";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { hostname } from "node:os";
import { CloseCode, type JsonValue } from "crier-protocol";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { AuthGate, type CrierHooks } from "./auth/gate.js";
import { TokenVerifier } from "./auth/jwt.js";
import { RoomPolicy } from "./auth/policy.js";
import { createBackends, createUserConnections } from "./backends.js";
import { type Broker, ChannelNames } from "./broker/broker.js";
import { Control } from "./cluster/control.js";
import { type Membership, type NodeInfo, newNodeId } from "./cluster/membership.js";
import { validateConfig } from "./config/load.js";
import type { CrierConfig, CrierConfigInput } from "./config/schema.js";
import { startupWarnings } from "./config/warnings.js";
import { NodeConsole } from "./console/console.js";
import type { ConsoleMethods, ConsoleViews } from "./console/views.js";
import { messageOf } from "./describe-error.js";
import type { HistoryStore } from "./history/history.js";
import { Hub } from "./hub/hub.js";
import { FrameDeflater } from "./hub/ws-deflate.js";
import { ConnectionAdmission } from "./limits/admission.js";
import { Refusals } from "./limits/refusals.js";
import { RoomSubscriberLimit } from "./limits/room-subscribers.js";
import type { UserConnections } from "./limits/user-connections.js";
import { UserConnectionLimit } from "./limits/user-limit.js";
import { createLogger } from "./log.js";
import { createMetrics, proxyMetrics } from "./metrics.js";
import type { PresenceStore } from "./presence/presence.js";
import { PresenceTracker } from "./presence/tracker.js";
import { type BackendProxy, createBackendProxy } from "./proxy/proxy.js";
import { Recovery } from "./recovery/recovery.js";
import { redactUrl } from "./redis/connection.js";
import { isClusterUrl } from "./redis/url.js";
import { RoomQueries } from "./service/room-queries.js";
import { type PublishResult, RoomService } from "./service/room-service.js";
import { type SessionHost, type SessionSettings, type SessionView, sessionSettings } from "./session/host.js";
import { OpenSessions } from "./session/open-sessions.js";
import { Session } from "./session/session.js";
import { WriteBatcher } from "./session/write-batcher.js";
import { type ApiHost, HttpApi } from "./transport/http-api.js";
import { attachTo, closeServer, createCrierServer, createMetricsServer, listenOn } from "./transport/listener.js";
import { originPolicy } from "./transport/origin.js";
import { SseEndpoint, type SseMethods } from "./transport/sse-endpoint.js";
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
  private readonly sessions = new OpenSessions();
  private readonly registry: Registry;
  private readonly startedAt = Date.now();
  private server: Server | undefined;
  private started = false;
  private closing: Promise<void> | undefined;

  private constructor(options: CrierOptions, config: CrierConfig) {
    this.config = config;
    this.nodeId = config.nodeId ?? newNodeId();
    this.logger = (options.logger ?? createLogger(config)).child({ node: this.nodeId });
    this.batcher = new WriteBatcher(config.delivery.coalesceMs);
    this.apiKeyGenerated = config.apiKey === undefined;
    this.apiKey = config.apiKey ?? randomBytes(24).toString("base64url");
    this.settings = sessionSettings(config);
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
    this.refusals = new Refusals(this.logger);
    const roomLimit = new RoomSubscriberLimit(config.limits.maxSubscribersPerRoom, this.refusals);
    this.hub = new Hub(this.broker, this.names, this.logger, this.recovery, roomLimit);
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
    this.userConnections = createUserConnections(config, this.nodeId, this.logger);
    this.limits = new UserConnectionLimit(this.userConnections, config.limits.maxConnectionsPerUser, this.refusals);
    const keyed = TokenVerifier.configured(config.jwt);
    this.verifier = keyed ? new TokenVerifier(config.jwt) : undefined;
    const deflater = config.delivery.compression.enabled ? new FrameDeflater(config.delivery.compression) : undefined;
    this.registry = createMetrics(
      {
        connections: () => this.sessions.size,
        hub: this.hub,
        broker: () => this.broker.stats(),
        brokerChannels: () => this.broker.channelCount(),
        ready: () => this.isReady(),
        closes: () => this.sessions.closeCodes,
        refusals: () => this.refusals.totals(),
        compression: deflater?.counters,
      },
      { node: this.nodeId },
    );
    this.proxy =
      config.proxy === undefined
        ? undefined
        : createBackendProxy(config.proxy, {
            logger: this.logger.child({ component: "proxy" }),
            observe: proxyMetrics(this.registry),
            namespaceOf: (room) => this.policy.options(room),
          });
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
        batcher: this.batcher,
        outboundQueueBytes: config.limits.outboundQueueBytes,
        deflater,
      },
      (connection, request) => this.sessions.add(new Session(connection, request, this)),
    );
    this.sse = new SseEndpoint(
      {
        nodeId: this.nodeId,
        allowedOrigins: config.allowedOrigins,
        maxConnectionsPerIp: config.limits.maxConnectionsPerIp,
        maxBodyBytes: config.limits.maxHttpBodyBytes,
        batcher: this.batcher,
        outboundQueueBytes: config.limits.outboundQueueBytes,
        trustProxy: config.trustProxy,
        refusals: this.refusals,
        logger: this.logger,
        onRefused: (kind, detail) => this.console.warn(kind, detail),
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
      authFailuresPerMinuteTotal: config.limits.apiAuthFailuresPerMinuteTotal,
      trustProxy: config.trustProxy,
      refusals: this.refusals,
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
    const anonymous = this.verifier === undefined && this.auth.allowAnonymous;
    for (const warning of startupWarnings(this.config, anonymous)) this.logger.warn(warning);
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
    attachTo(server, this);
  }

  /** Listens on config.host:config.port with a server of its own. */
  async listen(): Promise<AddressInfo> {
    const server = createCrierServer(this);
    this.server = server;
    const address = await listenOn(server, this.config.port, this.config.host);
    this.port = address.port;
    this.logger.info({ port: address.port, host: address.address, path: this.config.path }, "crier listening");
    if (this.config.metricsPort !== undefined) {
      this.metricsServer = createMetricsServer((request, response) => this.api.serveMetrics(request, response));
      const metrics = await listenOn(this.metricsServer, this.config.metricsPort, this.config.host);
      this.logger.info({ port: metrics.port }, "metrics listening");
    }
    return address;
  }

  /** The port of the /metrics listener (metricsPort), once listening. */
  metricsAddress(): AddressInfo | undefined {
    return (this.metricsServer?.address() ?? undefined) as AddressInfo | undefined;
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
    this.limits.release(session);
    if (this.sessions.closed(session) === CloseCode.SlowConsumer) {
      this.console.warn("slow_consumer", `client ${session.id} (user '${session.user}') closed with 4503`);
    }
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
    const stopped = server === undefined ? Promise.resolve() : closeServer(server);
    for (const session of this.sessions) session.close(CloseCode.ShuttingDown, "server shutting down");
    server?.closeIdleConnections();
    // A socket that does not finish the close handshake soon is dropped.
    const deadline = setTimeout(() => {
      for (const session of this.sessions) session.terminate();
      server?.closeAllConnections();
    }, 2000);
    deadline.unref();
    await stopped;
    clearTimeout(deadline);
    this.endpoint.close();
    this.console.close();
    if (this.metricsServer !== undefined) await closeServer(this.metricsServer);
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
