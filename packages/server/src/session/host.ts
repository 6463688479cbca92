// What a session needs from the node that owns it. Sessions depend on this
// interface, not on the node, so dependencies point inward.

import type { IncomingMessage } from "node:http";
import type { ConnectCommand, HistoryReply, Member, StreamPosition } from "crier-protocol";
import type { Logger } from "pino";
import type { Identity } from "../auth/identity.js";
import type { RoomAction } from "../auth/policy.js";
import type { HistoryRead } from "../history/history.js";
import type { Hub } from "../hub/hub.js";
import type { WriteBatcher } from "./write-batcher.js";

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

export interface PublishResult {
  offset?: number;
  epoch?: string;
}

/** What a session knows of itself that the host's hooks may look at. */
export interface SessionView {
  readonly id: string;
  readonly user: string;
  readonly identity: Identity;
  readonly rooms: ReadonlySet<string>;
  /** The close code, once closed. */
  readonly closeCode: number | undefined;
  /** Closes the connection with a close code. Idempotent. */
  close(code: number, reason: string): void;
  /** Drops the connection without a close handshake. */
  terminate(): void;
}

export interface SubscribeResult {
  /** Present when the room keeps history. */
  position?: StreamPosition;
  recovered: boolean;
}

export interface SessionHost {
  readonly nodeId: string;
  readonly logger: Logger;
  readonly settings: SessionSettings;
  readonly hub: Hub;
  readonly batcher: WriteBatcher;
  /** Resolves the identity for a `connect`, or throws ProtocolError("unauthorized"). */
  authenticate(request: IncomingMessage, command: ConnectCommand): Promise<Identity>;
  /**
   * Counts a connection of `user` against limits.maxConnectionsPerUser
   * (cluster-wide; "" is not counted) until sessionClosed. Throws
   * ProtocolError("rate_limited") over the limit, ("unavailable") when the
   * count cannot be read.
   */
  admitUser(session: SessionView, user: string): Promise<void>;
  /** Verifies a refreshed token; throws ProtocolError. */
  refresh(session: SessionView, token: string): Promise<Identity>;
  /** Throws ProtocolError("forbidden") when not allowed. */
  authorize(session: SessionView, room: string, action: RoomAction): Promise<void>;
  publishJson(room: string, dataJson: string, from: string): Promise<PublishResult>;
  sendJson(user: string, dataJson: string, from: string): Promise<void>;
  /** The room's members, cluster-wide; with `session`, only if it may subscribe to the room. */
  presence(room: string, session?: SessionView): Promise<Member[]>;
  history(room: string, since: StreamPosition | undefined, limit: number | undefined): Promise<HistoryReply>;
  /**
   * For a subscribe to a room with history: the current position and, with
   * `since`, the messages after it. Undefined when the room keeps no history.
   */
  catchUp(room: string, since: StreamPosition | undefined): Promise<HistoryRead | undefined>;
  /**
   * `session` is now subscribed to `room`: in rooms with presence or join/leave
   * events, it is listed and announced before this resolves. Does nothing if
   * the session is no longer in the room. Rejects (e.g. `unavailable`) when it
   * cannot be listed or announced; the session then undoes the subscription.
   */
  roomJoined(session: SessionView, room: string): Promise<void>;
  /** `session` is no longer in `room` (whatever the reason); its entry goes and its leave is announced. */
  roomLeft(session: SessionView, room: string): void;
  /** Whether `room`'s namespace keeps history. */
  keepsHistory(room: string): boolean;
  /** Called once, when the session has closed and left every index. */
  sessionClosed(session: SessionView): void;
}
