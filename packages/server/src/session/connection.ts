// The seam between a session and its transport: what a session needs of the
// connection it speaks over. The WebSocket transport (transport/ws-connection.ts)
// implements it; so does any other transport that carries the same frames
// (the HTTP fallback, for networks that block WebSocket). A session never
// sees sockets, framing or write coalescing.

import type { ServerFrame } from "crier-protocol";
import type { OutboundFrame } from "../hub/outbound-frame.js";

export type TransportName = "websocket" | "sse";

/** What a connection reports to the session that owns it. */
export interface ConnectionEvents {
  /** One client frame, as received: text (JSON) or binary (MessagePack). */
  frame(data: Buffer, isBinary: boolean): void;
  /** The connection is gone; `code` is the close code the client sent, or 1006. */
  closed(code: number): void;
  /** A transport error (logged); the connection ends with closed(). */
  error(error: Error): void;
}

export interface Connection {
  readonly transport: TransportName;
  /** The peer's address as the transport saw it (for operators: the console's connections view). */
  readonly address: string;
  /** Whether frames are MessagePack (binary) rather than JSON. */
  readonly binary: boolean;
  /** Starts reporting to `events`. Called once, by the session. */
  listen(events: ConnectionEvents): void;
  /** Whether frames may still be written (not closing or closed). */
  isOpen(): boolean;
  /**
   * Writes a shared frame. False, and nothing written, when it would take the
   * outbound queue past its bound: the session closes a slow consumer then.
   */
  send(frame: OutboundFrame): boolean;
  /** Writes a shared frame, first waiting while the queue is past its bound; false once closed. */
  sendPaced(frame: OutboundFrame): Promise<boolean>;
  /** Writes a frame for this connection only: a reply, an error, a notice. */
  sendOwn(frame: ServerFrame): void;
  /** Writes the server's ping. */
  sendPing(): void;
  /** Starts the close with a protocol close code. Idempotent. */
  close(code: number, reason: string): void;
  /** Drops the connection without a close handshake. */
  terminate(): void;
}
