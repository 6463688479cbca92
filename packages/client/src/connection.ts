// One WebSocket attempt: open it, send `connect`, wait for `connected`, answer the
// server's pings and call the connection dead when the server falls silent. Reconnects,
// commands and subscriptions belong to the client, which starts one Connection per attempt.

import { type ConnectCommand, type ConnectedReply, ProtocolError, type ServerFrame } from "crier-protocol";
import { type Codec, describeFrame } from "./codec.js";
import { asError, CrierClientError } from "./errors.js";
import { discardSocket, type WebSocketConstructor, type WebSocketLike } from "./socket.js";
import { startTimer, type Timer } from "./timer.js";

/** What ended a connection. Connections the client ends itself report 1006, like a browser does for a connection lost without a close frame. */
export interface ConnectionClose {
  code: number;
  reason: string;
  /** The server's `error` reply to `connect`, when there was one. */
  connectError: ProtocolError | undefined;
  /** Set when the client gave up on the connection (e.g. unsupported subprotocol) for a reason that retrying will not fix. */
  fatal: Error | undefined;
}

export interface ConnectionEvents {
  connected(reply: ConnectedReply): void;
  /** Every frame after `connected`, except `ping` (answered here). */
  frame(frame: ServerFrame): void;
  /** Called once, unless the owner called close(). */
  closed(close: ConnectionClose): void;
  error(error: Error): void;
}

export interface ConnectionSettings {
  WebSocket: WebSocketConstructor;
  url: string;
  protocols: string[];
  /** The subprotocol's encoding; the server must choose its protocol. */
  codec: Codec;
  /** The `connect` command, with its id. */
  connect: ConnectCommand & { id: number };
  /** From opening the socket to the `connected` reply. */
  handshakeTimeoutMs: number;
  pingMarginMs: number;
}

/** Close code reported for connections the client ended itself. */
export const CLIENT_ABORT_CODE = 1006;

export class Connection {
  readonly #settings: ConnectionSettings;
  readonly #events: ConnectionEvents;
  #socket: WebSocketLike | undefined;
  #connected = false;
  #connectError: ProtocolError | undefined;
  #handshakeTimer: Timer | undefined;
  #silenceTimer: Timer | undefined;
  #lastHeardAt = 0;
  readonly #pong: string | Uint8Array;

  /** Opens the socket; throws what the WebSocket constructor throws (e.g. a malformed URL). */
  constructor(settings: ConnectionSettings, events: ConnectionEvents) {
    this.#settings = settings;
    this.#events = events;
    this.#pong = settings.codec.encode({ op: "pong" });
    const socket = new settings.WebSocket(settings.url, settings.protocols);
    // Browsers hand binary frames over as Blobs unless told otherwise; `ws` ignores this for Buffers.
    if (settings.codec.binary) socket.binaryType = "arraybuffer";
    this.#socket = socket;
    socket.onopen = () => this.#onOpen();
    socket.onmessage = (event) => this.#onMessage(event.data);
    socket.onclose = (event) => this.#end(event.code, event.reason, "closed");
    socket.onerror = (event) => {
      // The close event that follows is what we act on; `ws` says why here, browsers do not.
      if (event?.error instanceof Error) this.#events.error(event.error);
    };
    this.#handshakeTimer = startTimer(settings.handshakeTimeoutMs, () => {
      const refused = this.#connectError;
      this.#abort(
        refused === undefined
          ? `no 'connected' reply within ${settings.handshakeTimeoutMs} ms`
          : `connect refused: ${refused.code}: ${refused.message}`,
      );
    });
  }

  /** Writes one frame; false when the socket is gone (the closed event has been or will be reported). */
  send(frame: string | Uint8Array): boolean {
    const socket = this.#socket;
    if (socket === undefined) return false;
    try {
      socket.send(frame);
      return true;
    } catch (error) {
      this.#events.error(asError(error));
      this.#abort("send failed");
      return false;
    }
  }

  /** Ends the connection at the owner's request, with a normal closing handshake; no closed event. */
  close(): void {
    const socket = this.#socket;
    if (socket === undefined) return;
    this.#release();
    discardSocket(socket, "close");
  }

  #onOpen(): void {
    const socket = this.#socket;
    if (socket === undefined) return;
    const codec = this.#settings.codec;
    // A server that chose none speaks JSON (docs/protocol.md), which only the JSON codec can read.
    const chosen = socket.protocol === "" ? (codec.binary ? "none" : codec.protocol) : socket.protocol;
    if (chosen !== codec.protocol) {
      const error = new CrierClientError(
        "unsupported_protocol",
        `the server chose subprotocol '${chosen}'; this client was set up for ${codec.protocol}`,
      );
      this.#abort(error.message, error);
      return;
    }
    this.send(codec.encode(this.#settings.connect));
  }

  #onMessage(data: unknown): void {
    if (this.#socket === undefined) return;
    this.#lastHeardAt = Date.now();
    const frame = this.#settings.codec.decode(data);
    if (frame === undefined) {
      this.#events.error(
        new CrierClientError(
          "bad_frame",
          `unreadable frame on ${this.#settings.codec.protocol} ignored: ${describeFrame(data)}`,
        ),
      );
      return;
    }
    if (frame.op === "ping") {
      this.send(this.#pong);
      return;
    }
    if (
      !this.#connected &&
      frame.op === "connected" &&
      (frame.id === undefined || frame.id === this.#settings.connect.id)
    ) {
      this.#onConnected(frame);
      return;
    }
    if (!this.#connected && frame.op === "error" && frame.id === this.#settings.connect.id) {
      // The server closes the connection next (4003, 4004…); its close code decides what
      // happens. If it does not, the handshake timer ends the connection.
      this.#connectError = new ProtocolError(frame.code, frame.message);
      this.#events.error(this.#connectError);
      return;
    }
    this.#events.frame(frame);
  }

  #onConnected(reply: ConnectedReply): void {
    this.#connected = true;
    this.#handshakeTimer?.cancel();
    this.#handshakeTimer = undefined;
    if (typeof reply.ping === "number" && reply.ping > 0)
      this.#watchSilence(reply.ping * 1000 + this.#settings.pingMarginMs);
    this.#events.connected(reply);
  }

  /**
   * Calls the connection dead after `limitMs` without any frame. Frames only stamp
   * `#lastHeardAt`; the timer re-arms itself for the remaining time, so a busy
   * connection does not pay a clearTimeout/setTimeout per frame.
   */
  #watchSilence(limitMs: number): void {
    this.#lastHeardAt = Date.now();
    const check = (): void => {
      const silentMs = Date.now() - this.#lastHeardAt;
      if (silentMs >= limitMs) this.#abort(`nothing heard from the server for ${silentMs} ms`);
      else this.#silenceTimer = startTimer(limitMs - silentMs, check);
    };
    this.#silenceTimer = startTimer(limitMs, check);
  }

  /** The client gives up on the socket: no closing handshake with a peer that may be gone. */
  #abort(reason: string, fatal?: Error): void {
    this.#end(CLIENT_ABORT_CODE, reason, "terminate", fatal);
  }

  #end(code: number, reason: string, how: "closed" | "terminate", fatal?: Error): void {
    const socket = this.#socket;
    if (socket === undefined) return;
    this.#release();
    if (how === "terminate") discardSocket(socket, "terminate");
    this.#events.closed({ code, reason, connectError: this.#connectError, fatal });
  }

  #release(): void {
    this.#socket = undefined;
    this.#handshakeTimer?.cancel();
    this.#handshakeTimer = undefined;
    this.#silenceTimer?.cancel();
    this.#silenceTimer = undefined;
  }
}
