// CrierClient: one logical connection to a crier server that outlives its sockets.
// It owns the reconnect loop and the public API; the command ids, their replies and
// the commands queued while reconnecting are requests.ts's, and the subscriptions it
// restores (with `since`) after each reconnect are subscriptions.ts's.

import {
  type ClientCommand,
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
    this.#subscriptions = new Subscriptions(this.#requests, this.#backoff, () => this.#state === "connected");
    if (typeof options.token === "string") this.#token = options.token;
  }

  get state(): ClientState {
    return this.#state;
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

  /** The live subscription to `room`, if any. */
  getSubscription(room: string): Subscription | undefined {
    return this.#subscriptions.get(room);
  }

  async publish(room: string, data: JsonValue): Promise<PublishResult> {
    checkRoom(room);
    const reply = await this.#requests.request({ op: "publish", room, data }, "ok");
    const result: PublishResult = {};
    if (reply.offset !== undefined) result.offset = reply.offset;
    if (reply.epoch !== undefined) result.epoch = reply.epoch;
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
    const reply = await this.#requests.request({ op: "presence_stats", room }, "presence_stats");
    return { clients: reply.clients, users: reply.users };
  }

  async history(room: string, options: HistoryOptions = {}): Promise<HistoryResult> {
    checkRoom(room);
    const command: ClientCommand = { op: "history", room };
    if (options.since !== undefined) command.since = options.since;
    if (options.limit !== undefined) command.limit = options.limit;
    const reply = await this.#requests.request(command, "history");
    return { room: reply.room, offset: reply.offset, epoch: reply.epoch, messages: reply.messages };
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

    const connect: ConnectCommand & { id: number } = { op: "connect", id: this.#requests.nextId() };
    if (token !== undefined) connect.token = token;
    if (this.#options.info !== undefined) connect.info = this.#options.info;
    if (this.#options.name !== undefined) connect.name = this.#options.name;
    try {
      const connection: Connection = new Connection(
        {
          WebSocket: this.#options.WebSocket,
          url: this.url,
          protocols: this.#options.protocols,
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
    const info: ConnectedInfo = { client: reply.client, user: reply.user, node: reply.node, ping: reply.ping };
    this.#info = info;
    // Subscriptions first, then queued commands: a publish queued while offline must
    // not overtake the resubscribe to its room.
    this.#subscriptions.resubscribeAll();
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
    switch (frame.op) {
      case "message":
        this.#subscriptions.message(frame);
        this.emit("message", frame);
        return;
      case "direct":
        this.emit("direct", frame);
        return;
      case "join":
        this.#subscriptions.memberPush(frame);
        this.emit("join", frame);
        return;
      case "leave":
        this.#subscriptions.memberPush(frame);
        this.emit("leave", frame);
        return;
      case "connected":
      case "subscribed":
      case "ok":
      case "presence":
      case "presence_stats":
      case "history":
      case "error":
        if (typeof frame.id === "number" && this.#requests.settle(frame.id, frame)) return;
        if (frame.op === "error") this.emit("error", new ProtocolError(frame.code, frame.message));
        return;
      default:
        // Unknown ops are ignored: a newer server may push things this SDK does not know yet.
        return;
    }
  }

  #onClosed(connection: Connection, close: ConnectionClose): void {
    if (connection !== this.#connection) return;
    this.#connection = undefined;
    this.#info = undefined;
    const { code, reason, connectError, fatal } = close;
    const refused = connectError !== undefined && REFUSALS.has(connectError.code);
    const tokenExpired = code === CloseCode.TokenExpired && typeof this.#options.token === "function";
    const willReconnect = fatal === undefined && !refused && (tokenExpired || shouldReconnect(code));
    const suffix = reason === "" ? "" : ` ${reason}`;

    this.#requests.failSent(
      new CrierClientError("disconnected", `the connection closed (${code}${suffix}) before the reply`, code),
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
