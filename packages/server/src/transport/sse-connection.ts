// An HTTP fallback session's Connection (docs/protocol.md "HTTP fallback"):
// server frames go out as Server-Sent Events on the GET /sse response, client
// frames come in through POST /emulation (sse-endpoint.ts hands them to
// receive()). Shared frames are written as prebuilt events (OutboundFrame's
// sseWire), coalesced per tick by the WriteBatcher like WebSocket frames.
//
// The outbound queue of a stream is response.writableLength: what the response
// holds before it has a socket, plus what its socket has not handed to the
// kernel yet, chunked-encoding framing included. Frames the batcher holds for
// coalescing are in it too (the batcher corks the socket; corked writes sit in
// the socket's buffer). The kernel's send buffer is not, exactly as for a
// WebSocket (ws-connection.ts counts socket.writableLength).

import type { ServerResponse } from "node:http";
import { CloseCode, encodeServerFrame, type ServerFrame } from "crier-protocol";
import type { OutboundFrame } from "../hub/outbound-frame.js";
import { sseTextEvent } from "../hub/sse-event.js";
import type { Connection, ConnectionEvents } from "../session/connection.js";
import type { WriteBatcher } from "../session/write-batcher.js";
import { BoundedWriter } from "./bounded-writer.js";

const PING = sseTextEvent('{"op":"ping"}');
/**
 * How long an ended stream may take to drain before it is dropped: a reader
 * that stopped reading would otherwise hold its queued bytes for good. The
 * same as ws's close timeout for a WebSocket close handshake.
 */
const DRAIN_TIMEOUT_MS = 30_000;

export interface SseConnectionOptions {
  batcher: WriteBatcher;
  /** Bound on bytes queued for the response (limits.outboundQueueBytes). */
  outboundQueueBytes: number;
}

export class SseConnection implements Connection {
  readonly transport = "sse";
  readonly binary = false;
  readonly address: string;
  /** The session id that /emulation POSTs name: unguessable, as it is all a POST needs. */
  readonly session: string;
  private readonly response: ServerResponse;
  private readonly out: BoundedWriter;
  private events: ConnectionEvents | undefined;
  /** Set once the final `close` event is written: nothing may follow it. */
  private ending = false;

  constructor(response: ServerResponse, session: string, options: SseConnectionOptions) {
    this.response = response;
    this.session = session;
    this.address = response.socket?.remoteAddress ?? "";
    this.out = new BoundedWriter(
      {
        queued: () => response.writableLength,
        socket: () => response.socket,
        isOpen: () => this.isOpen(),
        write: (bytes) => response.write(bytes),
        // The response corks its socket (or counts corks until it has one).
        cork: () => response.cork(),
        uncork: () => response.uncork(),
      },
      options.batcher,
      options.outboundQueueBytes,
    );
  }

  listen(events: ConnectionEvents): void {
    this.events = events;
    // A stream the client dropped ends its session like a socket closed without a close frame.
    this.response.once("close", () => events.closed(CloseCode.Abnormal));
    this.response.on("error", (error) => events.error(error));
  }

  /** Calls `callback` once the stream has ended, however it ended. */
  onEnded(callback: () => void): void {
    this.response.once("close", callback);
  }

  /** Client frames of one POST, in order; false when the session is gone (the POST gets 404). */
  receive(frames: readonly Buffer[]): boolean {
    const events = this.events;
    if (events === undefined || !this.isOpen()) return false;
    for (const frame of frames) events.frame(frame, false);
    return true;
  }

  isOpen(): boolean {
    return !this.ending && !this.response.destroyed;
  }

  send(frame: OutboundFrame): boolean {
    return this.out.send(frame.sseWire());
  }

  /** Waits on the socket's drain: a response emits 'drain' only after a write of its own returned false. */
  sendPaced(frame: OutboundFrame): Promise<boolean> {
    return this.out.sendPaced(frame.sseWire());
  }

  sendOwn(frame: ServerFrame): void {
    if (!this.isOpen()) return;
    // The session id rides on `connected`: the client learns it with everything else about its connection.
    const own = frame.op === "connected" ? { ...frame, session: this.session } : frame;
    this.out.write(sseTextEvent(encodeServerFrame(own)));
  }

  sendPing(): void {
    if (this.isOpen()) this.out.write(PING);
  }

  /** Writes the final `close` event and ends the stream. */
  close(code: number, reason: string): void {
    if (!this.isOpen()) return;
    this.out.write(sseTextEvent(JSON.stringify({ op: "close", code, reason })));
    this.ending = true;
    this.out.flush();
    this.response.end();
    const response = this.response;
    const timer = setTimeout(() => response.destroy(), DRAIN_TIMEOUT_MS);
    timer.unref();
    response.once("close", () => clearTimeout(timer));
  }

  terminate(): void {
    this.ending = true;
    this.response.destroy();
  }
}
