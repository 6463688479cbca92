// A WebSocket connection (ws) as a session's Connection: framing and the
// socket writer. Shared frames are written straight to the socket as complete
// prebuilt WebSocket frames, with no per-recipient header or copy, coalesced
// per tick by the WriteBatcher.

import type { Socket } from "node:net";
import { encodeServerFrame, type ServerFrame, SUBPROTOCOL_MSGPACK } from "crier-protocol";
import { encodeServerFrameMsgpack } from "crier-protocol/msgpack";
import type { WebSocket } from "ws";
import type { OutboundFrame } from "../hub/outbound-frame.js";
import { OPCODE_BINARY, wsFrame, wsTextFrame } from "../hub/ws-frame.js";
import type { Connection, ConnectionEvents } from "../session/connection.js";
import { SocketWriter, type WriteBatcher } from "../session/write-batcher.js";

/** WebSocket.OPEN. */
const OPEN = 1;
/** Pings as complete WebSocket frames, written like every other frame: one write, no per-ping encoding. */
const PING_JSON = wsTextFrame('{"op":"ping"}');
const PING_MSGPACK = wsFrame(encodeServerFrameMsgpack({ op: "ping" }), OPCODE_BINARY);

export interface WsConnectionOptions {
  batcher: WriteBatcher;
  /** Bound on bytes queued for the socket (limits.outboundQueueBytes). */
  outboundQueueBytes: number;
}

export class WsConnection implements Connection {
  readonly transport = "websocket";
  readonly binary: boolean;
  readonly address: string;
  private readonly ws: WebSocket;
  private readonly socket: Socket;
  private readonly writer: SocketWriter;
  private readonly batcher: WriteBatcher;
  private readonly limit: number;

  /**
   * Frames are written to `socket` under ws, which is safe because ws writes
   * each frame of its own synchronously (the endpoint turns compression off),
   * so frames never interleave.
   */
  constructor(ws: WebSocket, socket: Socket, options: WsConnectionOptions) {
    this.ws = ws;
    this.socket = socket;
    this.writer = new SocketWriter(socket);
    this.batcher = options.batcher;
    this.limit = options.outboundQueueBytes;
    this.binary = ws.protocol === SUBPROTOCOL_MSGPACK;
    this.address = socket.remoteAddress ?? "";
  }

  listen(events: ConnectionEvents): void {
    this.ws.on("message", (data, isBinary) => events.frame(data as Buffer, isBinary));
    this.ws.on("close", (code) => events.closed(code));
    this.ws.on("error", (error) => events.error(error));
  }

  isOpen(): boolean {
    // Past the close handshake's start, nothing more may be written (ws already sent or queued its close).
    return this.ws.readyState === OPEN;
  }

  send(frame: OutboundFrame): boolean {
    if (!this.isOpen()) return true;
    const bytes = this.wire(frame);
    if (!this.fits(bytes)) {
      // Frames held for coalescing count too: hand them to the kernel first.
      this.batcher.flush(this.writer);
      if (!this.fits(bytes)) return false;
    }
    this.write(bytes);
    return true;
  }

  async sendPaced(frame: OutboundFrame): Promise<boolean> {
    const bytes = this.wire(frame);
    while (this.isOpen() && this.socket.writableLength > 0 && !this.fits(bytes)) {
      // Held frames would never drain while corked: send them now.
      this.batcher.flush(this.writer);
      if (this.fits(bytes)) break;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.socket.off("drain", done);
          this.socket.off("close", done);
          resolve();
        };
        this.socket.once("drain", done);
        this.socket.once("close", done);
      });
    }
    if (!this.isOpen()) return false;
    this.write(bytes);
    return true;
  }

  /**
   * Encoded and framed here and written in one piece, like publications
   * (ws.send would write its header and the payload as two chunks).
   */
  sendOwn(frame: ServerFrame): void {
    if (!this.isOpen()) return;
    this.write(
      this.binary ? wsFrame(encodeServerFrameMsgpack(frame), OPCODE_BINARY) : wsTextFrame(encodeServerFrame(frame)),
    );
  }

  sendPing(): void {
    if (this.isOpen()) this.write(this.binary ? PING_MSGPACK : PING_JSON);
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason);
  }

  terminate(): void {
    this.ws.terminate();
  }

  private fits(bytes: Buffer): boolean {
    return this.socket.writableLength + bytes.length <= this.limit;
  }

  /** The shared, complete WebSocket frame in this connection's subprotocol. */
  private wire(frame: OutboundFrame): Buffer {
    return this.binary ? frame.msgpackWire() : frame.jsonWire();
  }

  private write(bytes: Buffer): void {
    this.batcher.hold(this.writer);
    this.socket.write(bytes);
  }
}
