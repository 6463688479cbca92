// A WebSocket connection (ws) as a session's Connection: framing and the
// socket writer. Shared frames are written straight to the socket as complete
// prebuilt WebSocket frames, with no per-recipient header or copy, coalesced
// per tick by the WriteBatcher.

import type { Socket } from "node:net";
import { encodeServerFrame, type ServerFrame, SUBPROTOCOL_MSGPACK } from "crier-protocol";
import { encodeServerFrameMsgpack } from "crier-protocol/msgpack";
import type { WebSocket } from "ws";
import type { OutboundFrame } from "../hub/outbound-frame.js";
import type { DeflatePeer } from "../hub/ws-deflate.js";
import { OPCODE_BINARY, OPCODE_TEXT, type Opcode, wsFrame, wsTextFrame } from "../hub/ws-frame.js";
import type { Connection, ConnectionEvents } from "../session/connection.js";
import type { WriteBatcher } from "../session/write-batcher.js";
import { BoundedWriter } from "./bounded-writer.js";

/** WebSocket.OPEN. */
const OPEN = 1;
/** Pings as complete WebSocket frames, written like every other frame: one write, no per-ping encoding. */
const PING_JSON = wsTextFrame('{"op":"ping"}');
const PING_MSGPACK = wsFrame(encodeServerFrameMsgpack({ op: "ping" }), OPCODE_BINARY);

export interface WsConnectionOptions {
  batcher: WriteBatcher;
  /** Bound on bytes queued for the socket (limits.outboundQueueBytes). */
  outboundQueueBytes: number;
  /** When the client negotiated permessage-deflate: the shared compressor and the window it accepts. */
  deflate?: DeflatePeer | undefined;
}

export class WsConnection implements Connection {
  readonly transport = "websocket";
  readonly binary: boolean;
  readonly address: string;
  private readonly ws: WebSocket;
  private readonly out: BoundedWriter;
  private readonly deflate: DeflatePeer | undefined;

  /**
   * Frames are written to `socket` under ws, which is safe because ws writes
   * only control frames of its own (close, pong), synchronously: crier never
   * calls ws.send, so ws never holds a frame back to compress it, and frames
   * never interleave.
   */
  constructor(ws: WebSocket, socket: Socket, options: WsConnectionOptions) {
    this.ws = ws;
    this.out = new BoundedWriter(
      {
        queued: () => socket.writableLength,
        socket: () => socket,
        isOpen: () => this.isOpen(),
        write: (bytes) => socket.write(bytes),
        cork: () => socket.cork(),
        uncork: () => socket.uncork(),
      },
      options.batcher,
      options.outboundQueueBytes,
    );
    this.binary = ws.protocol === SUBPROTOCOL_MSGPACK;
    this.deflate = options.deflate;
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
    return this.out.send(this.wire(frame));
  }

  sendPaced(frame: OutboundFrame): Promise<boolean> {
    return this.out.sendPaced(this.wire(frame));
  }

  /**
   * Encoded and framed here and written in one piece, like publications
   * (ws.send would write its header and the payload as two chunks).
   */
  sendOwn(frame: ServerFrame): void {
    if (!this.isOpen()) return;
    if (this.binary) {
      const payload = encodeServerFrameMsgpack(frame);
      this.out.write(this.deflated(payload, OPCODE_BINARY) ?? wsFrame(payload, OPCODE_BINARY));
      return;
    }
    const text = encodeServerFrame(frame);
    const large = this.deflate !== undefined && text.length >= this.deflate.deflater.settings.minBytes;
    this.out.write((large ? this.deflated(Buffer.from(text), OPCODE_TEXT) : undefined) ?? wsTextFrame(text));
  }

  sendPing(): void {
    if (this.isOpen()) this.out.write(this.binary ? PING_MSGPACK : PING_JSON);
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason);
  }

  terminate(): void {
    this.ws.terminate();
  }

  /** The shared, complete WebSocket frame in this connection's subprotocol. */
  private wire(frame: OutboundFrame): Buffer {
    if (this.deflate !== undefined) return frame.deflatedWire(this.binary, this.deflate);
    return this.binary ? frame.msgpackWire() : frame.jsonWire();
  }

  /** A frame of this connection's own, compressed when it negotiated permessage-deflate and it pays. */
  private deflated(payload: Buffer, opcode: Opcode): Buffer | undefined {
    return this.deflate?.deflater.frame(payload, opcode, this.deflate.windowBits);
  }
}
