// One client connection, whatever its transport: the handshake (`connect`
// first, within the connect timeout), command dispatch in order with acks by
// id, ping/pong, token expiry, and the bounded outbound side. Frames are
// checked and decoded in inbound.ts, one-reply commands answered in
// commands.ts, rooms (and their catch-up from history) kept in
// subscriptions.ts; framing and sockets are the transport's Connection.

import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import {
  type ClientCommand,
  CloseCode,
  type ConnectCommand,
  type ConnectedReply,
  type ErrorCode,
  type ErrorReply,
  type Member,
  ProtocolError,
  type ReplyFrame,
  type StreamPosition,
  SUBPROTOCOL_JSON,
  SUBPROTOCOL_MSGPACK,
} from "crier-protocol";
import type { Logger } from "pino";
import { DisconnectError } from "../auth/disconnect-error.js";
import { ANONYMOUS, type Identity } from "../auth/identity.js";
import { connectRefusalCode } from "../auth/refusal.js";
import { messageOf } from "../describe-error.js";
import type { OutboundFrame } from "../hub/outbound-frame.js";
import { answer, isAnswered } from "./commands.js";
import type { Connection } from "./connection.js";
import type { SessionHost } from "./host.js";
import { decodeInbound } from "./inbound.js";
import { Keepalive } from "./keepalive.js";
import { RateLimiter } from "./rate-limiter.js";
import { SessionRooms, type Subscriber } from "./subscriptions.js";

type State = "connecting" | "connected" | "closed";

/** Commands after which the next ones wait, so a client's subscribe-then-publish keeps its order. */
const BARRIERS: ReadonlySet<ClientCommand["op"]> = new Set(["connect", "subscribe", "unsubscribe", "refresh"]);

export class Session implements Subscriber {
  readonly id = randomUUID();
  /** Epoch milliseconds when the socket was accepted, and its peer address (for the console). */
  readonly connectedAt = Date.now();
  readonly address: string;
  identity: Identity = ANONYMOUS;
  /** The close code, once closed: the one this server sent, or the client's. */
  closeCode: number | undefined;
  readonly forwarded: Readonly<Record<string, string>>;

  private state: State = "connecting";
  private readonly connection: Connection;
  private readonly host: SessionHost;
  /**
   * The upgrade request, for the authenticate hook; let go once connected, as
   * its headers would otherwise cost every idle connection about a kilobyte.
   */
  private request: IncomingMessage | undefined;
  /** Made on first use: a child logger per connection costs memory that idle connections never use. */
  private childLogger: Logger | undefined;
  private readonly limiter: RateLimiter;
  private connectTimer: NodeJS.Timeout | undefined;
  private readonly keepalive: Keepalive;
  private busy = false;
  private readonly waiting: ClientCommand[] = [];
  private readonly subscriptions: SessionRooms;

  constructor(connection: Connection, request: IncomingMessage, host: SessionHost) {
    this.connection = connection;
    this.request = request;
    this.host = host;
    this.forwarded = host.auth.forwardedHeaders(request);
    this.address = connection.address;
    this.subscriptions = new SessionRooms(host, this);
    this.limiter = new RateLimiter(host.settings.commandsPerSecond);
    this.keepalive = new Keepalive(
      {
        sendPing: () => this.connection.sendPing(),
        close: (code, reason) => this.close(code, reason),
        expired: () => this.onExpired(),
      },
      host.settings.pingIntervalMs,
      host.settings.pongTimeoutMs,
    );
    this.connectTimer = setTimeout(
      () => this.close(CloseCode.ConnectExpected, "no connect frame within the connect timeout"),
      host.settings.connectTimeoutMs,
    );
    connection.listen({
      frame: (data, isBinary) => this.onFrame(data, isBinary),
      closed: (code) => {
        this.closeCode ??= code;
        this.onClosed();
      },
      error: (error) => this.logger.debug({ err: error }, "connection error"),
    });
  }

  private get logger(): Logger {
    this.childLogger ??= this.host.logger.child({ client: this.id });
    return this.childLogger;
  }

  get user(): string {
    return this.identity.user;
  }

  /** The transport and the subprotocol, e.g. "websocket crier.v1.json". */
  get transport(): string {
    return `${this.connection.transport} ${this.connection.binary ? SUBPROTOCOL_MSGPACK : SUBPROTOCOL_JSON}`;
  }

  get rooms(): ReadonlySet<string> {
    return this.subscriptions.names;
  }

  /** A method, not a field read, so the compiler does not narrow it across awaits. */
  isOpen(): boolean {
    return this.state !== "closed";
  }

  get connected(): boolean {
    return this.state === "connected";
  }

  // ---- inbound -------------------------------------------------------------

  private onFrame(data: Buffer, isBinary: boolean): void {
    if (this.state === "closed") return;
    const decoded = decodeInbound(data, isBinary, this.connection.binary, this.host.settings.maxFrameBytes);
    if (decoded.kind === "close") {
      this.close(decoded.code, decoded.reason);
      return;
    }
    // Frames after a `connect` still under way wait for it like any command after a barrier;
    // run() closes with 4001 if it failed and left the session unconnected.
    if (
      this.state === "connecting" &&
      !this.busy &&
      !(decoded.kind === "command" && decoded.command.op === "connect")
    ) {
      if (decoded.kind === "invalid" && decoded.op === "connect") {
        this.error(decoded.id, decoded.error.code, decoded.error.message);
        return;
      }
      this.close(CloseCode.ConnectExpected, "the first frame must be connect");
      return;
    }
    if (!(decoded.kind === "command" && decoded.command.op === "pong")) {
      const verdict = this.limiter.take();
      if (verdict !== "ok") {
        const what = verdict === "abusive" ? "closed with 4508" : "a command refused";
        this.host.warning("rate_limited", `client ${this.id} (user '${this.user}'): ${what}`);
      }
      if (verdict === "abusive") {
        this.close(CloseCode.RateLimited, "too many commands");
        return;
      }
      if (verdict === "limited") {
        const id = decoded.kind === "command" ? decoded.command.id : decoded.id;
        this.error(id, "rate_limited", "too many commands: slow down");
        return;
      }
    }
    if (decoded.kind === "invalid") {
      this.error(decoded.id, decoded.error.code, decoded.error.message);
      return;
    }
    if (this.busy) this.waiting.push(decoded.command);
    else this.run(decoded.command);
  }

  private run(command: ClientCommand): void {
    if (this.state === "connecting" && command.op !== "connect") {
      this.close(CloseCode.ConnectExpected, "the first frame must be connect");
      return;
    }
    const result = this.dispatch(command).catch((error: unknown) => this.fail(command.id, error));
    if (!BARRIERS.has(command.op)) return;
    this.busy = true;
    result.finally(() => {
      this.busy = false;
      while (!this.busy && this.waiting.length > 0 && this.state !== "closed") {
        const next = this.waiting.shift();
        if (next !== undefined) this.run(next);
      }
    });
  }

  private async dispatch(command: ClientCommand): Promise<void> {
    if (this.state === "connecting" && command.op !== "connect") {
      // Queued behind a connect that did not succeed.
      this.close(CloseCode.ConnectExpected, "connect did not succeed: send connect first");
      return;
    }
    if (isAnswered(command)) {
      this.reply(command.id, await answer(this.host, this, command));
      return;
    }
    switch (command.op) {
      case "connect":
        return this.onConnect(command);
      case "pong":
        this.keepalive.pong();
        return;
      case "subscribe":
        return this.onSubscribe(command.room, command.id, command.since);
      case "unsubscribe":
        if (!this.subscriptions.has(command.room)) {
          throw new ProtocolError("not_subscribed", `not subscribed to '${command.room}'`);
        }
        this.subscriptions.leave(command.room);
        this.reply(command.id, { op: "ok" });
        return;
      case "refresh": {
        const identity = await this.host.auth.refresh(this, command.token);
        this.identity = identity;
        this.keepalive.expireAt(identity.expiresAt);
        this.reply(command.id, { op: "ok" });
        return;
      }
    }
  }

  private async onConnect(command: ConnectCommand): Promise<void> {
    if (this.state !== "connecting") throw new ProtocolError("bad_request", "already connected");
    const { maxInfoBytes } = this.host.settings;
    if (command.info !== undefined && Buffer.byteLength(JSON.stringify(command.info)) > maxInfoBytes) {
      throw new ProtocolError("too_large", `field 'info' is over ${maxInfoBytes} bytes`);
    }
    const request = this.request;
    if (request === undefined) throw new ProtocolError("bad_request", "already connected");
    let identity: Identity;
    try {
      identity = await this.host.auth.authenticate(request, command, {
        client: this.id,
        transport: this.connection.transport,
        protocol: this.connection.binary ? SUBPROTOCOL_MSGPACK : SUBPROTOCOL_JSON,
        remoteAddr: request.socket.remoteAddress ?? "",
        forwarded: this.forwarded,
      });
    } catch (error) {
      if (error instanceof ProtocolError && error.code === "unauthorized") {
        this.host.warning("auth_failed", `${this.address || "unknown address"}: ${error.message}`);
      }
      this.refuseConnect(command.id, error);
      return;
    }
    if (!this.isOpen()) return;
    try {
      await this.host.limits.admit(this, identity.user);
    } catch (error) {
      // Over the per-user limit: transient, the SDK retries with backoff and gets in once a connection closes.
      const limited = error instanceof ProtocolError && error.code === "rate_limited";
      this.fail(command.id, error);
      this.close(
        limited ? CloseCode.RateLimited : CloseCode.ServerError,
        limited ? "too many connections for this user" : "try again",
      );
      return;
    }
    if (!this.isOpen()) return;
    if (command.info !== undefined && identity.info === undefined) identity = { ...identity, info: command.info };
    this.identity = identity;
    this.request = undefined;
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    try {
      await this.host.hub.addMember(this);
    } catch (error) {
      this.fail(command.id, error);
      this.close(CloseCode.ServerError, "backplane unavailable: try again");
      return;
    }
    if (!this.isOpen()) {
      // Closed while joining: leave the index we just entered.
      this.host.hub.removeMember(this, []);
      return;
    }
    this.state = "connected";
    const connected: ConnectedReply = {
      op: "connected",
      client: this.id,
      user: this.user,
      node: this.host.nodeId,
      ping: this.host.settings.pingIntervalMs / 1000,
    };
    const subs = this.identity.subs ?? [];
    // The server-side subscriptions to come, so a client can tell them from its own (docs/protocol.md).
    if (subs.length > 0) connected.subs = [...subs];
    // Every client needs `connected`, with or without an id.
    this.connection.sendOwn(command.id === undefined ? connected : { ...connected, id: command.id });
    this.keepalive.schedulePing();
    this.keepalive.expireAt(this.identity.expiresAt);
    for (const room of subs) this.subscribeServerSide(room, command.subs?.[room]);
  }

  /**
   * A refused connect ends the connection: its error first (a `disconnect`
   * answer of the backend sends none), then the close code that fits it.
   */
  private refuseConnect(id: number | undefined, error: unknown): void {
    if (error instanceof DisconnectError) {
      this.close(error.disconnect.code, error.disconnect.reason);
      return;
    }
    this.fail(id, error);
    this.close(connectRefusalCode(error), error instanceof ProtocolError ? error.message : "connect failed");
  }

  /**
   * A subscription the server made for the connection (JWT `subs`, the
   * connect proxy's `rooms`): granted already, so not authorized again, and
   * answered by a `subscribed` push without id, resumed from `since` when the
   * `connect` gave one. A failure comes as an error without id, naming the room.
   */
  private subscribeServerSide(room: string, since: StreamPosition | undefined): void {
    // A server-side subscription's `subscribed` is a push: every client needs it.
    this.subscriptions
      .subscribe(room, since, true, (frame) => this.push(frame))
      .catch((error: unknown) => this.fail(undefined, error, room));
  }

  /**
   * The credentials' expiry came. An identity from the connect proxy is
   * renewed by the refresh proxy when there is one; any other expiry closes
   * with 4005, as does a refresh proxy that will not renew.
   */
  private onExpired(): void {
    const proxy = this.host.proxy;
    if (!this.identity.fromProxy || proxy === undefined || !proxy.has("refresh")) {
      this.close(CloseCode.TokenExpired, "token expired: refresh it and reconnect");
      return;
    }
    proxy.refresh(this).then(
      (expiresAt) => {
        if (!this.isOpen()) return;
        this.identity = { ...this.identity, expiresAt };
        this.keepalive.expireAt(expiresAt);
      },
      (error: unknown) => {
        if (error instanceof DisconnectError) this.close(error.disconnect.code, error.disconnect.reason);
        else this.close(CloseCode.TokenExpired, `credentials expired and were not renewed: ${messageOf(error)}`);
      },
    );
  }

  private onSubscribe(room: string, id: number | undefined, since: StreamPosition | undefined): Promise<void> {
    return this.subscriptions.subscribe(room, since, false, (frame) => this.reply(id, frame));
  }

  member(): Member {
    const member: Member = { user: this.user, client: this.id };
    if (this.identity.info !== undefined) member.info = this.identity.info;
    return member;
  }

  // ---- outbound ------------------------------------------------------------

  /** Hub delivery: one frame shared by every recipient, encoded once per subprotocol. */
  deliver(frame: OutboundFrame, room?: string, offset?: number): void {
    if (this.state === "connected" && this.subscriptions.admit(room, offset, frame)) this.send(frame);
  }

  sendPaced(frame: OutboundFrame): Promise<boolean> {
    return this.connected ? this.connection.sendPaced(frame) : Promise.resolve(false);
  }

  send(frame: OutboundFrame): void {
    if (!this.connection.send(frame)) {
      this.close(CloseCode.SlowConsumer, "slow consumer: outbound queue over its limit");
    }
  }

  roomRemoved(room: string): void {
    if (this.state !== "connected" || !this.subscriptions.has(room)) return;
    this.subscriptions.leave(room);
    this.connection.sendOwn({ op: "unsubscribed", room });
  }

  disconnect(code: number, reason: string): void {
    this.close(code, reason);
  }

  /** Sends a command's success reply: only to commands with an id. */
  private reply(id: number | undefined, frame: ReplyFrame): void {
    if (id === undefined || this.state === "closed") return;
    this.connection.sendOwn({ ...frame, id });
  }

  /** Sends a frame no command asked for. */
  private push(frame: ReplyFrame): void {
    if (this.state !== "closed") this.connection.sendOwn(frame);
  }

  /** `room`: the server-side subscription the error is about. */
  private error(id: number | undefined, code: ErrorCode, message: string, room?: string): void {
    if (this.state === "closed") return;
    const frame: ErrorReply = id === undefined ? { op: "error", code, message } : { op: "error", id, code, message };
    if (room !== undefined) frame.room = room;
    this.connection.sendOwn(frame);
  }

  private fail(id: number | undefined, error: unknown, room?: string): void {
    if (error instanceof DisconnectError) {
      this.close(error.disconnect.code, error.disconnect.reason);
      return;
    }
    if (error instanceof ProtocolError) {
      this.error(id, error.code, error.message, room);
      return;
    }
    this.logger.error({ err: error }, "command failed");
    this.error(id, "internal", "internal error", room);
  }

  // ---- closing -------------------------------------------------------------

  /** Closes the connection with a protocol close code. Idempotent. */
  close(code: number, reason: string): void {
    if (this.state === "closed") return;
    this.logger.debug({ code, reason }, "closing");
    this.closeCode = code;
    this.connection.close(code, reason);
    this.onClosed();
  }

  /** Drops the connection without a close handshake (shutdown of a stuck socket). */
  terminate(): void {
    this.closeCode ??= CloseCode.Abnormal;
    this.connection.terminate();
    this.onClosed();
  }

  private onClosed(): void {
    if (this.state === "closed") return;
    const wasConnected = this.state === "connected";
    this.state = "closed";
    clearTimeout(this.connectTimer);
    this.keepalive.stop();
    this.waiting.length = 0;
    this.subscriptions.closed(wasConnected);
    this.host.sessionClosed(this);
  }
}
