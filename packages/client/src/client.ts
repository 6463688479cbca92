// CrierClient: one logical connection to a crier server that outlives its sockets.
// It owns the reconnect loop and the public API; the command ids, their replies and
// the commands queued while reconnecting are requests.ts's, and the subscriptions it
// restores (with `since`) after each reconnect are subscriptions.ts's.

import {
  CloseCode,
  type ConnectCommand,
  type ConnectedReply,
  type DirectPush,
  type ErrorCode,
  type HistoryMessage,
  type JoinPush,
  type JsonValue,
  type LeavePush,
  type Member,
  type MessagePush,
  ProtocolError,
  type ServerFrame,
  type StreamPosition,
  shouldReconnect,
} from "crier-protocol";
import { type BackoffOptions, backoffDelay } from "./backoff.js";
import { Connection, type ConnectionClose } from "./connection.js";
import { type Deferred, deferred } from "./deferred.js";
import { Emitter } from "./emitter.js";
import { asError, CrierClientError } from "./errors.js";
import { type ClientOptions, type ResolvedOptions, resolveOptions } from "./options.js";
import { Requests } from "./requests.js";
import type { MessageHandler, SubscribeOptions, Subscription } from "./subscription.js";
import { checkRoom, Subscriptions } from "./subscriptions.js";
import { startTimer, type Timer } from "./timer.js";
import { dialTarget, nextTransport, type TransportName } from "./transports.js";

export interface ConnectedInfo {
  /** This connection's id. */
  client: string;
  /** The user (JWT `sub`), "" when anonymous. */
  user: string;
  /** The server instance the client is connected to. */
  node: string;
  /** The server's ping interval, in seconds. */
  ping: number;
}

export interface DisconnectedInfo {
  /** The WebSocket close code; 1006 when the client ended the connection itself (timeout, silence). */
  code: number;
  reason: string;
  willReconnect: boolean;
}

export interface ClientEvents {
  connected: ConnectedInfo;
  disconnected: DisconnectedInfo;
  /** Errors with no caller to reject: an `error` frame without id, an unreadable frame, a token function that threw. */
  error: Error;
  /** Every `message` push, whatever the room. */
  message: MessagePush;
  direct: DirectPush;
  join: JoinPush;
  leave: LeavePush;
  /**
   * A subscription the server made (a JWT `subs` claim, the connect proxy's `rooms`), announced
   * once, when a connection's `connected` first lists it and before that connection's `connected` event.
   */
  subscription: Subscription;
}

export type ClientState = "disconnected" | "connecting" | "connected";

export interface PublishResult {
  /** Present when the room keeps history. */
  offset?: number;
  epoch?: string;
}

export interface HistoryOptions {
  since?: StreamPosition;
  limit?: number;
}

export interface HistoryResult {
  room: string;
  offset: number;
  epoch: string;
  messages: HistoryMessage[];
}

/** A room's counts: connections in it, and distinct users among them. */
export interface PresenceStats {
  clients: number;
  users: number;
}

/** Errors in reply to `connect` that another attempt would only repeat. */
const REFUSALS = new Set<ErrorCode>(["unauthorized", "forbidden", "bad_request", "too_large"]);

export class CrierClient extends Emitter<ClientEvents> {
  readonly url: string;
  readonly #options: ResolvedOptions;
  readonly #backoff: BackoffOptions;
  readonly #requests: Requests;
  readonly #subscriptions: Subscriptions;
  #state: ClientState = "disconnected";
  #connection: Connection | undefined;
  #info: ConnectedInfo | undefined;
  #token: string | undefined;
  /** Set after a 4005 close: the token function is asked for a new token before the next attempt. */
  #tokenStale = false;
  #attempt = 0;
  /** Bumped whenever the client stops, so an attempt begun before (a token fetch in flight) gives up. */
  #run = 0;
  #reconnectTimer: Timer | undefined;
  #connectWaiter: Deferred<ConnectedInfo> | undefined;
  #transport: TransportName;

  constructor(url: string, options: ClientOptions = {}) {
    super();
    this.url = url;
    this.#options = resolveOptions(options);
    this.#backoff = {
      minDelayMs: this.#options.minReconnectDelayMs,
      maxDelayMs: this.#options.maxReconnectDelayMs,
      jitter: this.#options.jitter,
    };
    this.#requests = new Requests(this.#options, {
      connected: () => (this.#state === "connected" ? this.#connection : undefined),
      active: () => this.#state !== "disconnected",
    });
    this.#subscriptions = new Subscriptions(
      this.#requests,
      this.#backoff,
      () => this.#state === "connected",
      (subscription) => this.emit("subscription", subscription),
    );
    this.#transport = this.#options.transports[0] ?? "websocket";
    if (typeof options.token === "string") this.#token = options.token;
  }

  get state(): ClientState {
    return this.#state;
  }

  /** The transport of the current connection, or of the next attempt: "websocket", or "sse" after a fallback. */
  get transport(): TransportName {
    return this.#transport;
  }

  /** The `connected` reply of the current connection, while connected. */
  get info(): ConnectedInfo | undefined {
    return this.#info;
  }

  /**
   * Connects (or joins the attempt under way) and resolves with the `connected` reply.
   * Transient failures are retried with backoff and keep the promise pending; it rejects
   * when the client gives up (a terminal close code, a refused token) or close() is called.
   */
  connect(): Promise<ConnectedInfo> {
    if (this.#state === "connected" && this.#info !== undefined) return Promise.resolve(this.#info);
    this.#connectWaiter ??= deferred();
    const { promise } = this.#connectWaiter;
    if (this.#state === "disconnected") {
      this.#state = "connecting";
      this.#attempt = 0;
      void this.#dial();
    }
    return promise;
  }

  /**
   * Closes the connection for good: stops reconnecting, rejects every waiting command and
   * ends every subscription; no timer is left running. Safe to call more than once.
   */
  close(): void {
    const wasActive = this.#state !== "disconnected";
    const error = new CrierClientError("closed", "the client was closed");
    this.#halt(error);
    this.#subscriptions.endAll(error);
    if (wasActive) this.emit("disconnected", { code: 1000, reason: "client closed", willReconnect: false });
  }

  /**
   * Subscribes to `room`; `handler` gets every `message` push for it. Works before
   * connect() too: subscriptions are sent as soon as the client is connected, and again
   * after each reconnect, with `since` set to the last position seen.
   */
  subscribe(room: string, handler: MessageHandler, options: SubscribeOptions = {}): Subscription {
    return this.#subscriptions.add(room, handler, options);
  }

  /** The live subscription to `room`, if any: made by subscribe() or by the server. */
  getSubscription(room: string): Subscription | undefined {
    return this.#subscriptions.get(room);
  }

  async publish(room: string, data: JsonValue): Promise<PublishResult> {
    checkRoom(room);
    const { op, id, ...result } = await this.#requests.request({ op: "publish", room, data }, "ok");
    return result;
  }

  /** Sends `data` to every connection of `user`, on every instance. */
  async send(user: string, data: JsonValue): Promise<void> {
    if (user === "")
      throw new ProtocolError("bad_request", "user must not be empty: anonymous connections cannot be addressed");
    await this.#requests.request({ op: "send", user, data }, "ok");
  }

  async presence(room: string): Promise<Member[]> {
    checkRoom(room);
    const reply = await this.#requests.request({ op: "presence", room }, "presence");
    return reply.members;
  }

  /** The room's counts, cluster-wide, without its member list (cheap even in a room of thousands). */
  async presenceStats(room: string): Promise<PresenceStats> {
    checkRoom(room);
    const { clients, users } = await this.#requests.request({ op: "presence_stats", room }, "presence_stats");
    return { clients, users };
  }

  async history(room: string, options: HistoryOptions = {}): Promise<HistoryResult> {
    checkRoom(room);
    const { op, id, ...result } = await this.#requests.request({ op: "history", room, ...options }, "history");
    return result;
  }

  /**
   * Calls `method` on the application's backend through the server's `rpc` proxy and resolves
   * with the backend's `data`. Queued while reconnecting like other commands; the backend's
   * error rejects with ProtocolError.
   */
  async rpc(method: string, data: JsonValue = null): Promise<JsonValue> {
    return (await this.#requests.request({ op: "rpc", method, data }, "rpc")).data;
  }

  /** Gives the server a new token for the same user; later reconnects use it too. */
  async refresh(token: string): Promise<void> {
    await this.#requests.request({ op: "refresh", token }, "ok");
    this.#token = token;
    this.#tokenStale = false;
  }

  // Connection lifecycle.

  async #dial(): Promise<void> {
    const run = this.#run;
    let token: string | undefined;
    try {
      token = await this.#currentToken();
    } catch (error) {
      if (run !== this.#run) return;
      this.emit("error", asError(error));
      this.#scheduleReconnect();
      return;
    }
    if (run !== this.#run) return;

    const { info, name } = this.#options;
    // Fields left undefined are not sent: both codecs leave them out.
    const connect: ConnectCommand & { id: number } = {
      op: "connect",
      id: this.#requests.nextId(),
      token,
      info,
      name,
      subs: this.#subscriptions.positions(),
    };
    try {
      const connection: Connection = new Connection(
        {
          ...dialTarget(this.#transport, this.#options, this.url),
          protocols: this.#transport === "sse" ? [this.#options.codec.protocol] : this.#options.protocols,
          codec: this.#options.codec,
          connect,
          handshakeTimeoutMs: this.#options.ackTimeoutMs,
          pingMarginMs: this.#options.pingMarginMs,
        },
        {
          connected: (reply) => this.#onConnected(connection, reply),
          frame: (frame) => this.#onFrame(connection, frame),
          closed: (close) => this.#onClosed(connection, close),
          error: (error) => this.emit("error", error),
        },
      );
      this.#connection = connection;
    } catch (error) {
      // The WebSocket constructor refused the URL or the protocols: retrying will not help.
      const cause = asError(error);
      this.emit("error", cause);
      this.#halt(cause);
    }
  }

  async #currentToken(): Promise<string | undefined> {
    const source = this.#options.token;
    if (typeof source !== "function") return this.#token;
    if (this.#token === undefined || this.#tokenStale) {
      const token = await source();
      if (typeof token !== "string") throw new TypeError("crier-client: the token function must return a string");
      this.#token = token;
      this.#tokenStale = false;
    }
    return this.#token;
  }

  #onConnected(connection: Connection, reply: ConnectedReply): void {
    if (connection !== this.#connection) return;
    this.#state = "connected";
    this.#attempt = 0;
    const { op, id, session, subs, ...info } = reply;
    this.#info = info;
    // Subscriptions first, then queued commands: a publish queued while offline must
    // not overtake the resubscribe to its room.
    this.#subscriptions.connected(subs);
    this.#requests.flush(connection);
    // A failed write above ends the connection synchronously; then it never was "connected".
    if (connection !== this.#connection) return;
    const waiter = this.#connectWaiter;
    this.#connectWaiter = undefined;
    waiter?.resolve(info);
    this.emit("connected", info);
  }

  #onFrame(connection: Connection, frame: ServerFrame): void {
    if (connection !== this.#connection) return;
    const subscriptions = this.#subscriptions;
    switch (frame.op) {
      case "message":
        subscriptions.message(frame);
        this.emit("message", frame);
        return;
      case "direct":
        this.emit("direct", frame);
        return;
      case "join":
      case "leave":
        subscriptions.memberPush(frame);
        this.emit(frame.op, frame);
        return;
      case "unsubscribed":
        subscriptions.ended(frame.room);
        return;
      case "ping":
        return;
    }
    // A reply, or a push shaped like one (`subscribed`, `error` without id). Anything else,
    // e.g. a push a newer server sends that this SDK does not know, is ignored.
    const taken =
      frame.id !== undefined
        ? this.#requests.settle(frame.id, frame)
        : frame.op === "subscribed"
          ? subscriptions.pushed(frame)
          : frame.op === "error" && subscriptions.refused(frame);
    if (!taken && frame.op === "error") this.emit("error", new ProtocolError(frame.code, frame.message));
  }

  #onClosed(connection: Connection, close: ConnectionClose): void {
    if (connection !== this.#connection) return;
    const { code, reason, connectError, fatal } = close;
    // Lost before `connected`, and not refused by the server: the network may block this transport.
    if (this.#state === "connecting" && connectError === undefined && fatal === undefined) {
      this.#transport = nextTransport(this.#options.transports, this.#transport);
    }
    this.#connection = undefined;
    this.#info = undefined;
    const refused = connectError !== undefined && REFUSALS.has(connectError.code);
    const tokenExpired = code === CloseCode.TokenExpired && typeof this.#options.token === "function";
    const willReconnect = fatal === undefined && !refused && (tokenExpired || shouldReconnect(code));
    const suffix = reason === "" ? "" : ` ${reason}`;

    this.#requests.failAll(
      new CrierClientError("disconnected", `the connection closed (${code}${suffix}) before the reply`, code),
      true,
    );
    this.#subscriptions.connectionLost();
    if (willReconnect) {
      if (tokenExpired) this.#tokenStale = true;
      this.#state = "connecting";
      this.#scheduleReconnect();
    } else {
      this.#halt(
        fatal ??
          connectError ??
          new CrierClientError("closed", `the server closed the connection (${code}${suffix}); not reconnecting`, code),
      );
    }
    this.emit("disconnected", { code, reason, willReconnect });
  }

  #scheduleReconnect(): void {
    const delay = backoffDelay(this.#attempt, this.#backoff);
    this.#attempt += 1;
    this.#reconnectTimer?.cancel();
    this.#reconnectTimer = startTimer(
      delay,
      () => {
        this.#reconnectTimer = undefined;
        void this.#dial();
      },
      true,
    );
  }

  /** Stops connecting and fails what waits on a connection. Subscriptions stay registered for the next connect(). */
  #halt(error: Error): void {
    this.#run += 1;
    this.#state = "disconnected";
    this.#info = undefined;
    this.#reconnectTimer?.cancel();
    this.#reconnectTimer = undefined;
    this.#subscriptions.cancelRetries();
    const connection = this.#connection;
    this.#connection = undefined;
    connection?.close();
    this.#requests.failAll(error);
    const waiter = this.#connectWaiter;
    this.#connectWaiter = undefined;
    waiter?.reject(error);
  }
}
