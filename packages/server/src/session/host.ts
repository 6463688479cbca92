// What a session needs from the node that owns it: small parts, each with its
// own job, rather than the node itself, so dependencies point inward.

import type { IncomingMessage } from "node:http";
import type { ConnectCommand, Member } from "crier-protocol";
import type { Logger } from "pino";
import type { Identity } from "../auth/identity.js";
import type { RoomAction } from "../auth/policy.js";
import type { Hub } from "../hub/hub.js";
import type { Recovery } from "../recovery/recovery.js";
import type { RoomQueries } from "../service/room-queries.js";
import type { PublishResult, RoomService } from "../service/room-service.js";

export type { PublishResult };

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
  /** The close code, once closed. */
  readonly closeCode: number | undefined;
  /** Closes the connection with a close code. Idempotent. */
  close(code: number, reason: string): void;
  /** Drops the connection without a close handshake. */
  terminate(): void;
}

/** Who may connect and do what (auth/gate.ts). */
export interface SessionAuth {
  /** Resolves the identity for a `connect`, or throws ProtocolError("unauthorized"). */
  authenticate(request: IncomingMessage, command: ConnectCommand): Promise<Identity>;
  /** Verifies a refreshed token; throws ProtocolError. */
  refresh(session: SessionView, token: string): Promise<Identity>;
  /** Throws ProtocolError("forbidden") when not allowed. */
  authorize(session: SessionView, room: string, action: RoomAction): Promise<void>;
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
  /** Called once, when the session has closed and left every index. */
  sessionClosed(session: SessionView): void;
}
