// One client connection, whatever its transport: the handshake (`connect`
// first, within the connect timeout), command dispatch with acks by id,
// ping/pong, token expiry, and the bounded outbound side. Encoding lives in
// crier-protocol, framing and sockets in the transport's Connection, fan-out
// in the hub, catching up from history in recovery/.

import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import {
  type ClientCommand,
  CloseCode,
  type ConnectCommand,
  type ConnectedReply,
  decodeClientFrame,
  type ErrorCode,
  type ErrorReply,
  type Member,
  ProtocolError,
  type ReplyFrame,
  type StreamPosition,
  SUBPROTOCOL_JSON,
  SUBPROTOCOL_MSGPACK,
} from "crier-protocol";
import { decodeClientFrameMsgpack } from "crier-protocol/msgpack";
import type { Logger } from "pino";
import { DisconnectError } from "../auth/disconnect-error.js";
import { ANONYMOUS, type Identity } from "../auth/identity.js";
import { TokenExpiredError } from "../auth/jwt.js";
import { messageOf } from "../describe-error.js";
import type { HubMember } from "../hub/hub.js";
import type { OutboundFrame } from "../hub/outbound-frame.js";
import { CatchUp } from "../recovery/catch-up.js";
import type { Connection } from "./connection.js";
import type { SessionHost, SessionView } from "./host.js";
import { Keepalive } from "./keepalive.js";
import { RateLimiter } from "./rate-limiter.js";

type State = "connecting" | "connected" | "closed";

/** Commands after which the next ones wait, so a client's subscribe-then-publish keeps its order. */
const BARRIERS: ReadonlySet<ClientCommand["op"]> = new Set(["connect", "subscribe", "unsubscribe", "refresh"]);

export class Session implements HubMember, SessionView {
  readonly id = randomUUID();
  readonly rooms = new Set<string>();
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
  /** Per room with history: keeps this connection's offsets gap- and duplicate-free across a catch-up. */
  private catchUps: Map<string, CatchUp> | undefined;

  constructor(connection: Connection, request: IncomingMessage, host: SessionHost) {
    this.connection = connection;
    this.request = request;
    this.host = host;
    this.forwarded = host.auth.forwardedHeaders(request);
    this.address = connection.address;
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

  /** A method, not a field read, so the compiler does not narrow it across awaits. */
  private isClosed(): boolean {
    return this.state === "closed";
  }

  get connected(): boolean {
    return this.state === "connected";
  }

  // ---- inbound -------------------------------------------------------------

  private onFrame(data: Buffer, isBinary: boolean): void {
    if (this.state === "closed") return;
    const { maxFrameBytes } = this.host.settings;
    if (data.length > maxFrameBytes) {
      this.close(CloseCode.MessageTooLarge, `frame of ${data.length} bytes is over the limit of ${maxFrameBytes}`);
      return;
    }
    const binary = this.connection.binary;
    if (isBinary !== binary) {
      this.close(
        CloseCode.BadFrame,
        binary ? "text frame on the MessagePack subprotocol" : "binary frame on the JSON subprotocol",
      );
      return;
    }
    const decoded = binary ? decodeClientFrameMsgpack(data) : decodeClientFrame(data.toString("utf8"));
    if (decoded.kind === "fatal") {
      this.close(CloseCode.BadFrame, decoded.reason);
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
    const host = this.host;
    if (this.state === "connecting" && command.op !== "connect") {
      // Queued behind a connect that did not succeed.
      this.close(CloseCode.ConnectExpected, "connect did not succeed: send connect first");
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
        if (!this.rooms.has(command.room)) throw notSubscribed(command.room);
        this.leaveRoom(command.room);
        this.reply(command.id, { op: "ok" });
        return;
      case "publish": {
        const data = await host.auth.authorizePublish(this, command.room, command.data);
        const result = await host.rooms.publish(command.room, JSON.stringify(data), this.user);
        this.reply(command.id, { op: "ok", ...result });
        return;
      }
      case "send":
        this.checkMaySend();
        await host.rooms.send(command.user, JSON.stringify(command.data), this.user);
        this.reply(command.id, { op: "ok" });
        return;
      case "presence": {
        // A client sees who is in a room only if it could be there itself.
        await host.auth.authorize(this, command.room, "subscribe");
        const members = await host.queries.presence(command.room);
        this.reply(command.id, { op: "presence", room: command.room, members });
        return;
      }
      case "presence_stats": {
        await host.auth.authorize(this, command.room, "subscribe");
        const stats = await host.queries.presenceStats(command.room);
        this.reply(command.id, { op: "presence_stats", room: command.room, ...stats });
        return;
      }
      case "history":
        this.reply(command.id, await host.queries.history(command.room, command.since, command.limit));
        return;
      case "rpc": {
        if (host.proxy === undefined) {
          throw new ProtocolError("bad_request", "rpc is not available: this server has no rpc proxy (proxy.rpc)");
        }
        const data = await host.proxy.rpc(this, command.method, command.data);
        this.reply(command.id, { op: "rpc", data });
        return;
      }
      case "refresh": {
        const identity = await host.auth.refresh(this, command.token);
        this.identity = identity;
        this.keepalive.expireAt(identity.expiresAt);
        this.reply(command.id, { op: "ok" });
        return;
      }
    }
  }

  private checkMaySend(): void {
    const policy = this.host.settings.clientSend;
    if (policy === "none") throw new ProtocolError("forbidden", "clients may not send to users on this server");
    if (policy === "authenticated" && this.user === "") {
      throw new ProtocolError("forbidden", "anonymous connections may not send to users");
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
    if (this.isClosed()) return;
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
    if (this.isClosed()) return;
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
    if (this.isClosed()) {
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
    const code =
      error instanceof TokenExpiredError
        ? CloseCode.TokenExpired
        : error instanceof ProtocolError && error.code === "unauthorized"
          ? CloseCode.Unauthorized
          : error instanceof ProtocolError && error.code === "forbidden"
            ? CloseCode.Forbidden
            : CloseCode.ServerError;
    this.close(code, error instanceof ProtocolError ? error.message : "connect failed");
  }

  /**
   * A subscription the server made for the connection (JWT `subs`, the
   * connect proxy's `rooms`): granted already, so not authorized again, and
   * answered by a `subscribed` push without id, resumed from `since` when the
   * `connect` gave one. A failure comes as an error without id, naming the room.
   */
  private subscribeServerSide(room: string, since: StreamPosition | undefined): void {
    this.onSubscribe(room, undefined, since, true).catch((error: unknown) => this.fail(undefined, error, room));
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
        if (this.isClosed()) return;
        this.identity = { ...this.identity, expiresAt };
        this.keepalive.expireAt(expiresAt);
      },
      (error: unknown) => {
        if (error instanceof DisconnectError) this.close(error.disconnect.code, error.disconnect.reason);
        else this.close(CloseCode.TokenExpired, `credentials expired and were not renewed: ${messageOf(error)}`);
      },
    );
  }

  private async onSubscribe(
    room: string,
    id: number | undefined,
    since: StreamPosition | undefined,
    serverSide = false,
  ): Promise<void> {
    const { maxSubscriptions } = this.host.settings;
    if (this.rooms.has(room)) throw new ProtocolError("already_subscribed", `already subscribed to '${room}'`);
    if (this.rooms.size >= maxSubscriptions) {
      throw new ProtocolError(
        "forbidden",
        `subscription limit reached: ${maxSubscriptions} rooms per connection (limits.maxSubscriptions)`,
      );
    }
    if (!serverSide) await this.host.auth.authorize(this, room, "subscribe");
    // Closed meanwhile (e.g. by a bad frame in the same read): joining now would leave it in the hub for good.
    if (this.isClosed()) return;
    // In a room with history, live messages are held from the moment the
    // subscription is live until the history read says where this client is.
    const catchUp = this.host.recovery.keepsHistory(room) ? new CatchUp(this.host.recovery, room) : undefined;
    if (catchUp !== undefined) {
      this.catchUps ??= new Map();
      this.catchUps.set(room, catchUp);
    }
    this.rooms.add(room);
    const current = (): boolean => !this.isClosed() && this.rooms.has(room) && this.catchUps?.get(room) === catchUp;
    try {
      await this.host.hub.subscribe(this, room);
      // Left (closed, or unsubscribed by the server) while subscribing: not a member any more.
      if (current()) await this.host.presence.joined(room, this.member());
      // A server-side subscription's `subscribed` is a push: every client needs it.
      const answer = (frame: ReplyFrame): void => (serverSide ? this.push(frame) : this.reply(id, frame));
      if (catchUp === undefined) {
        answer({ op: "subscribed", room, recovered: false });
        return;
      }
      await catchUp.run(since, {
        subscribed: (position, recovered) =>
          answer({ op: "subscribed", room, offset: position.offset, epoch: position.epoch, recovered }),
        sendPaced: (frame) => (this.connected ? this.connection.sendPaced(frame) : Promise.resolve(false)),
        send: (frame) => this.send(frame),
        seed: (position) => this.host.hub.seed(room, position),
        current,
        close: (code, reason) => this.close(code, reason),
      });
    } catch (error) {
      if (this.rooms.has(room) && this.catchUps?.get(room) === catchUp) this.leaveRoom(room);
      throw error;
    }
  }

  private member(): Member {
    const member: Member = { user: this.user, client: this.id };
    if (this.identity.info !== undefined) member.info = this.identity.info;
    return member;
  }

  /** Leaves `room` here: the hub's index, the catch-up, and the room's presence. */
  private leaveRoom(room: string): void {
    this.rooms.delete(room);
    this.catchUps?.delete(room);
    this.host.hub.unsubscribe(this, room);
    this.host.presence.left(room, this.id);
  }

  // ---- outbound ------------------------------------------------------------

  /** Hub delivery: one frame shared by every recipient, encoded once per subprotocol. */
  deliver(frame: OutboundFrame, room?: string, offset?: number): void {
    if (this.state !== "connected") return;
    const catchUp = offset === undefined || room === undefined ? undefined : this.catchUps?.get(room);
    if (catchUp !== undefined && offset !== undefined) {
      const verdict = catchUp.admit(offset, frame);
      if (verdict === "duplicate" || verdict === "held") return;
      if (verdict === "overflow") {
        // Live messages wait while history is replayed; a replay that cannot keep up with them ends here.
        this.close(CloseCode.SlowConsumer, "slow consumer: too far behind during recovery");
        return;
      }
    }
    this.send(frame);
  }

  private send(frame: OutboundFrame): void {
    if (!this.connection.send(frame)) {
      this.close(CloseCode.SlowConsumer, "slow consumer: outbound queue over its limit");
    }
  }

  roomRemoved(room: string): void {
    if (this.state !== "connected" || !this.rooms.has(room)) return;
    this.leaveRoom(room);
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
    this.catchUps = undefined;
    if (wasConnected) {
      this.host.hub.removeMember(this, this.rooms);
      for (const room of this.rooms) this.host.presence.left(room, this.id);
    }
    this.rooms.clear();
    this.host.sessionClosed(this);
  }
}

function notSubscribed(room: string): ProtocolError {
  return new ProtocolError("not_subscribed", `not subscribed to '${room}'`);
}
