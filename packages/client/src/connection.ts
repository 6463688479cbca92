// One WebSocket attempt: open it, send `connect`, wait for `connected`, answer the
// server's pings and call the connection dead when the server falls silent. Reconnects,
// commands and subscriptions belong to the client, which starts one Connection per attempt.

import {
  type ConnectCommand,
  type ConnectedReply,
  decodeServerFrame,
  ProtocolError,
  type ServerFrame,
  SUBPROTOCOL_JSON,
} from "crier-protocol";
import { CrierClientError } from "./errors.js";
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

  /** Opens the socket; throws what the WebSocket constructor throws (e.g. a malformed URL). */
  constructor(settings: ConnectionSettings, events: ConnectionEvents) {
    this.#settings = settings;
    this.#events = events;
    const socket = new settings.WebSocket(settings.url, settings.protocols);
    this.#socket = socket;
    socket.onopen = () => this.#onOpen();
    socket.onmessage = (event) => this.#onMessage(event.data);
    socket.onclose = (event) => this.#end(event.code, event.reason, "closed");
    socket.onerror = (event) => {
      // The close event that follows is what we act on; `ws` says why here, browsers do not.
      if (event !== null && typeof event === "object" && event.error instanceof Error) this.#events.error(event.error);
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
  send(text: string): boolean {
    const socket = this.#socket;
    if (socket === undefined) return false;
    try {
      socket.send(text);
      return true;
    } catch (error) {
      this.#events.error(error instanceof Error ? error : new Error(String(error)));
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
    if (socket.protocol !== "" && socket.protocol !== SUBPROTOCOL_JSON) {
      const error = new CrierClientError(
        "unsupported_protocol",
        `the server chose subprotocol '${socket.protocol}'; crier-client speaks ${SUBPROTOCOL_JSON}`,
      );
      this.#abort(error.message, error);
      return;
    }
    this.send(JSON.stringify(this.#settings.connect));
  }

  #onMessage(data: unknown): void {
    if (this.#socket === undefined) return;
    this.#lastHeardAt = Date.now();
    if (typeof data !== "string") {
      this.#events.error(new CrierClientError("bad_frame", "binary frame on the crier.v1.json subprotocol; ignored"));
      return;
    }
    const frame = decodeServerFrame(data);
    if (frame === undefined) {
      this.#events.error(new CrierClientError("bad_frame", `unreadable frame ignored: ${data.slice(0, 100)}`));
      return;
    }
    if (frame.op === "ping") {
      this.send('{"op":"pong"}');
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
