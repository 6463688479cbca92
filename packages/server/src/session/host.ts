// What a session needs from the node that owns it: small parts, each with its
// own job, rather than the node itself, so dependencies point inward.

import type { IncomingMessage } from "node:http";
import type { ConnectCommand, JsonValue, Member } from "crier-protocol";
import type { Logger } from "pino";
import type { Identity } from "../auth/identity.js";
import type { RoomAction } from "../auth/policy.js";
import type { CrierConfig } from "../config/schema.js";
import type { Hub } from "../hub/hub.js";
import type { BackendProxy, ConnectContext } from "../proxy/proxy.js";
import type { Recovery } from "../recovery/recovery.js";
import type { RoomQueries } from "../service/room-queries.js";
import type { PublishResult, RoomService } from "../service/room-service.js";

export type { PublishResult };

/** The settings every session of a node runs with, from the validated configuration. */
export function sessionSettings(config: Pick<CrierConfig, "timeouts" | "limits" | "clientSend">): SessionSettings {
  const { timeouts, limits } = config;
  return {
    connectTimeoutMs: timeouts.connectMs,
    pingIntervalMs: timeouts.pingMs,
    pongTimeoutMs: timeouts.pongMs,
    maxFrameBytes: limits.maxFrameBytes,
    commandsPerSecond: limits.commandsPerSecond,
    maxSubscriptions: limits.maxSubscriptions,
    outboundQueueBytes: limits.outboundQueueBytes,
    maxInfoBytes: limits.maxInfoBytes,
    clientSend: config.clientSend,
  };
}

export interface SessionSettings {
  connectTimeoutMs: number;
  pingIntervalMs: number;
  pongTimeoutMs: number;
  maxFrameBytes: number;
  commandsPerSecond: number;
  maxSubscriptions: number;
  outboundQueueBytes: number;
  maxInfoBytes: number;
  clientSend: "all" | "authenticated" | "none";
}

/** What a session knows of itself that the host's hooks may look at. */
export interface SessionView {
  readonly id: string;
  readonly user: string;
  readonly identity: Identity;
  readonly rooms: ReadonlySet<string>;
  /** Headers of the connection's request that proxy calls forward (proxy.headers). */
  readonly forwarded: Readonly<Record<string, string>>;
  /** Epoch milliseconds when the connection was accepted. */
  readonly connectedAt: number;
  /** The peer's address as the socket saw it. */
  readonly address: string;
  /** e.g. "websocket crier.v1.json". */
  readonly transport: string;
  /** The close code, once closed. */
  readonly closeCode: number | undefined;
  /** Closes the connection with a close code. Idempotent. */
  close(code: number, reason: string): void;
  /** Drops the connection without a close handshake. */
  terminate(): void;
}

/** Who may connect and do what (auth/gate.ts). */
export interface SessionAuth {
  /** Resolves the identity for a `connect`, or throws ProtocolError("unauthorized") (or the backend's refusal). */
  authenticate(request: IncomingMessage, command: ConnectCommand, context: ConnectContext): Promise<Identity>;
  /** The headers of `request` that proxy calls for its connection forward. */
  forwardedHeaders(request: IncomingMessage): Readonly<Record<string, string>>;
  /** Verifies a refreshed token; throws ProtocolError. */
  refresh(session: SessionView, token: string): Promise<Identity>;
  /** Throws ProtocolError("forbidden") when not allowed. */
  authorize(session: SessionView, room: string, action: RoomAction): Promise<void>;
  /** Throws when `session` may not publish to `room`; resolves with the data to publish. */
  authorizePublish(session: SessionView, room: string, data: JsonValue): Promise<JsonValue>;
}

/** This instance's side of presence (presence/tracker.ts). */
export interface SessionPresence {
  /**
   * `member` is now in `room`: in rooms with presence or join/leave events, it
   * is listed and announced before this resolves. Rejects (e.g.
   * `unavailable`) when it cannot be; the session then undoes the subscription.
   */
  joined(room: string, member: Member): Promise<void>;
  /** `client` is no longer in `room` (whatever the reason): its entry goes and its leave is announced. */
  left(room: string, client: string): void;
}

/** Limits on who may stay connected (limits/user-limit.ts). */
export interface SessionLimits {
  /**
   * Counts a connection of `user` against limits.maxConnectionsPerUser
   * (cluster-wide; "" is not counted) until the session closes. Throws
   * ProtocolError("rate_limited") over the limit, ("unavailable") when the
   * count cannot be read.
   */
  admit(session: SessionView, user: string): Promise<void>;
}

export interface SessionHost {
  readonly nodeId: string;
  readonly logger: Logger;
  readonly settings: SessionSettings;
  readonly hub: Hub;
  readonly recovery: Recovery;
  readonly rooms: RoomService;
  readonly queries: RoomQueries;
  readonly auth: SessionAuth;
  readonly presence: SessionPresence;
  /** The application's backend, when a proxy is configured (rpc, refresh of proxy-given expiries). */
  readonly proxy: BackendProxy | undefined;
  /** Something an operator should see in the console's recent warnings. */
  warning(kind: "rate_limited" | "auth_failed", detail: string): void;
  /** limits.maxConnectionsPerUser (limits/user-limit.ts). */
  readonly limits: SessionLimits;
  /** Called once, when the session has closed and left every index. */
  sessionClosed(session: SessionView): void;
}
