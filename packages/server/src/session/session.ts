// One WebSocket connection: the handshake (`connect` first, within the connect
// timeout), command dispatch with acks by id, ping/pong, token expiry, and the
// bounded outbound side. Encoding lives in crier-protocol; fan-out in the hub.

import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import {
  type ClientCommand,
  CloseCode,
  type ConnectCommand,
  decodeClientFrame,
  type ErrorCode,
  encodeServerFrame,
  ProtocolError,
  type ReplyFrame,
  type ServerFrame,
  type StreamPosition,
  SUBPROTOCOL_MSGPACK,
} from "crier-protocol";
import { decodeClientFrameMsgpack, encodeServerFrameMsgpack } from "crier-protocol/msgpack";
import type { Logger } from "pino";
import type { WebSocket } from "ws";
import { ANONYMOUS, type Identity } from "../auth/identity.js";
import { OffsetGate } from "../history/merge.js";
import type { HubMember } from "../hub/hub.js";
import type { OutboundFrame } from "../hub/outbound-frame.js";
import { OPCODE_BINARY, wsFrame, wsTextFrame } from "../hub/ws-frame.js";
import type { SessionHost, SessionView } from "./host.js";
import { Keepalive } from "./keepalive.js";
import { RateLimiter } from "./rate-limiter.js";
import { type ReplayTarget, replay } from "./replay.js";
import { SocketWriter } from "./write-batcher.js";

/** Live messages a connection may hold per room while catching up from history. */
const MAX_HELD = 10_000;
/** WebSocket.OPEN. */
const OPEN = 1;
/** Pings as complete WebSocket frames, written like every other frame: one write, no per-ping encoding. */
const PING_JSON = wsTextFrame('{"op":"ping"}');
const PING_MSGPACK = wsFrame(encodeServerFrameMsgpack({ op: "ping" }), OPCODE_BINARY);

type State = "connecting" | "connected" | "closed";

/** Commands after which the next ones wait, so a client's subscribe-then-publish keeps its order. */
const BARRIERS: ReadonlySet<ClientCommand["op"]> = new Set(["connect", "subscribe", "unsubscribe", "refresh"]);

export class Session implements HubMember, SessionView, ReplayTarget {
  readonly id = randomUUID();
  readonly rooms = new Set<string>();
  identity: Identity = ANONYMOUS;
  /** The close code, once closed: the one this server sent, or the client's. */
  closeCode: number | undefined;

  private state: State = "connecting";
  private readonly ws: WebSocket;
  private readonly socket: Socket;
  private readonly writer: SocketWriter;
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
  private gates: Map<string, OffsetGate<OutboundFrame>> | undefined;
  /** Whether this connection speaks crier.v1.msgpack (binary frames) rather than JSON. */
  private readonly binary: boolean;

  constructor(ws: WebSocket, socket: Socket, request: IncomingMessage, host: SessionHost) {
    this.ws = ws;
    this.socket = socket;
    this.writer = new SocketWriter(socket);
    this.request = request;
    this.host = host;
    this.binary = ws.protocol === SUBPROTOCOL_MSGPACK;
    this.limiter = new RateLimiter(host.settings.commandsPerSecond);
    this.keepalive = new Keepalive(
      {
        sendPing: () => {
          if (this.ws.readyState === OPEN) this.write(this.binary ? PING_MSGPACK : PING_JSON);
        },
        close: (code, reason) => this.close(code, reason),
      },
      host.settings.pingIntervalMs,
      host.settings.pongTimeoutMs,
    );
    this.connectTimer = setTimeout(
      () => this.close(CloseCode.ConnectExpected, "no connect frame within the connect timeout"),
      host.settings.connectTimeoutMs,
    );
    ws.on("message", (data, isBinary) => this.onFrame(data as Buffer, isBinary));
    ws.on("close", (code) => {
      this.closeCode ??= code;
      this.onClosed();
    });
    ws.on("error", (error) => this.logger.debug({ err: error }, "websocket error"));
  }

  private get logger(): Logger {
    this.childLogger ??= this.host.logger.child({ client: this.id });
    return this.childLogger;
  }

  get user(): string {
    return this.identity.user;
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
    if (data.length > this.host.settings.maxFrameBytes) {
      this.close(
        CloseCode.MessageTooLarge,
        `frame of ${data.length} bytes is over the limit of ${this.host.settings.maxFrameBytes}`,
      );
      return;
    }
    if (isBinary !== this.binary) {
      this.close(
        CloseCode.BadFrame,
        this.binary ? "text frame on the MessagePack subprotocol" : "binary frame on the JSON subprotocol",
      );
      return;
    }
    const decoded = this.binary ? decodeClientFrameMsgpack(data) : decodeClientFrame(data.toString("utf8"));
    if (decoded.kind === "fatal") {
      this.close(CloseCode.BadFrame, decoded.reason);
      return;
    }
    if (this.state === "connecting" && !(decoded.kind === "command" && decoded.command.op === "connect")) {
      if (decoded.kind === "invalid" && decoded.op === "connect") {
        this.error(decoded.id, decoded.error.code, decoded.error.message);
        return;
      }
      this.close(CloseCode.ConnectExpected, "the first frame must be connect");
      return;
    }
    if (!(decoded.kind === "command" && decoded.command.op === "pong")) {
      const verdict = this.limiter.take();
      if (verdict === "abusive") {
        this.close(CloseCode.RateLimited, "too many commands");
        return;
      }
      if (verdict === "limited") {
        this.error(
          decoded.kind === "command" ? decoded.command.id : decoded.id,
          "rate_limited",
          "too many commands: slow down",
        );
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
    switch (command.op) {
      case "connect":
        return this.onConnect(command);
      case "pong":
        this.keepalive.pong();
        return;
      case "subscribe":
        return this.onSubscribe(command.room, command.id, command.since);
      case "unsubscribe": {
        if (!this.rooms.has(command.room)) throw notSubscribed(command.room);
        this.rooms.delete(command.room);
        this.gates?.delete(command.room);
        this.host.hub.unsubscribe(this, command.room);
        this.host.roomLeft(this, command.room);
        this.reply(command.id, { op: "ok" });
        return;
      }
      case "publish": {
        await this.host.authorize(this, command.room, "publish");
        const result = await this.host.publishJson(command.room, JSON.stringify(command.data), this.user);
        this.reply(command.id, { op: "ok", ...result });
        return;
      }
      case "send": {
        const policy = this.host.settings.clientSend;
        if (policy === "none" || (policy === "authenticated" && this.user === "")) {
          throw new ProtocolError(
            "forbidden",
            policy === "none"
              ? "clients may not send to users on this server"
              : "anonymous connections may not send to users",
          );
        }
        await this.host.sendJson(command.user, JSON.stringify(command.data), this.user);
        this.reply(command.id, { op: "ok" });
        return;
      }
      case "presence": {
        const members = await this.host.presence(command.room, this);
        this.reply(command.id, { op: "presence", room: command.room, members });
        return;
      }
      case "history": {
        const reply = await this.host.history(command.room, command.since, command.limit);
        this.reply(command.id, reply);
        return;
      }
      case "refresh": {
        const identity = await this.host.refresh(this, command.token);
        this.identity = identity;
        this.keepalive.expireAt(identity.expiresAt);
        this.reply(command.id, { op: "ok" });
        return;
      }
    }
  }

  private async onConnect(command: ConnectCommand): Promise<void> {
    if (this.state !== "connecting") throw new ProtocolError("bad_request", "already connected");
    if (
      command.info !== undefined &&
      Buffer.byteLength(JSON.stringify(command.info)) > this.host.settings.maxInfoBytes
    ) {
      throw new ProtocolError("too_large", `field 'info' is over ${this.host.settings.maxInfoBytes} bytes`);
    }
    let identity: Identity;
    try {
      if (this.request === undefined) throw new ProtocolError("bad_request", "already connected");
      identity = await this.host.authenticate(this.request, command);
    } catch (error) {
      if (!(error instanceof ProtocolError) || error.code !== "unauthorized") throw error;
      this.error(command.id, error.code, error.message);
      const expired = error.message === "token expired";
      this.close(expired ? CloseCode.TokenExpired : CloseCode.Unauthorized, error.message);
      return;
    }
    if (this.isClosed()) return;
    try {
      await this.host.admitUser(this, identity.user);
    } catch (error) {
      // Over the per-user limit: transient, the SDK retries with backoff and gets in once a connection closes.
      const limited = error instanceof ProtocolError && error.code === "rate_limited";
      this.fail(command.id, error);
      this.close(limited ? CloseCode.RateLimited : 1011, limited ? "too many connections for this user" : "try again");
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
      this.close(1011, "backplane unavailable: try again");
      return;
    }
    if (this.isClosed()) {
      // Closed while joining: leave the index we just entered.
      this.host.hub.removeMember(this, []);
      return;
    }
    this.state = "connected";
    this.reply(
      command.id,
      {
        op: "connected",
        client: this.id,
        user: this.user,
        node: this.host.nodeId,
        ping: this.host.settings.pingIntervalMs / 1000,
      },
      true,
    );
    this.keepalive.schedulePing();
    this.keepalive.expireAt(this.identity.expiresAt);
  }

  private async onSubscribe(room: string, id: number | undefined, since: StreamPosition | undefined): Promise<void> {
    if (this.rooms.has(room)) throw new ProtocolError("already_subscribed", `already subscribed to '${room}'`);
    if (this.rooms.size >= this.host.settings.maxSubscriptions) {
      throw new ProtocolError(
        "forbidden",
        `subscription limit reached: ${this.host.settings.maxSubscriptions} rooms per connection (limits.maxSubscriptions)`,
      );
    }
    await this.host.authorize(this, room, "subscribe");
    // Closed meanwhile (e.g. by a bad frame in the same read): joining now would leave it in the hub for good.
    if (this.isClosed()) return;
    // In a room with history, live messages are held from the moment the
    // subscription is live until the history read says where this client is.
    const gate = this.host.keepsHistory(room) ? new OffsetGate<OutboundFrame>(0, true) : undefined;
    if (gate !== undefined) {
      this.gates ??= new Map();
      this.gates.set(room, gate);
    }
    this.rooms.add(room);
    try {
      await this.host.hub.subscribe(this, room);
      await this.host.roomJoined(this, room);
      const read = gate === undefined ? undefined : await this.host.catchUp(room, since);
      if (this.isClosed() || this.gates?.get(room) !== gate) return;
      if (gate === undefined || read === undefined) {
        this.reply(id, { op: "subscribed", room, recovered: false });
        return;
      }
      const position = read.position;
      this.host.hub.seed(room, position);
      const recovered =
        since !== undefined && read.complete && since.epoch === position.epoch && since.offset <= position.offset;
      this.reply(id, { op: "subscribed", room, offset: position.offset, epoch: position.epoch, recovered });
      let after = position.offset;
      if (recovered) {
        const outcome = await replay(
          room,
          since.offset,
          position,
          read.messages,
          (from) => this.host.catchUp(room, from),
          this,
        );
        if (outcome.kind === "closed" || this.gates?.get(room) !== gate) return;
        if (outcome.kind === "lost") {
          this.close(CloseCode.MessagesLost, `missed messages in '${room}' left history during the replay: reconnect`);
          return;
        }
        after = outcome.last;
      }
      for (const frame of gate.release(after, []).items) this.send(frame);
    } catch (error) {
      if (this.rooms.delete(room)) {
        this.host.hub.unsubscribe(this, room);
        this.host.roomLeft(this, room);
      }
      if (this.gates?.get(room) === gate) this.gates?.delete(room);
      throw error;
    }
  }

  // ---- outbound ------------------------------------------------------------

  /** Hub delivery: one frame shared by every recipient, encoded once per subprotocol. */
  deliver(frame: OutboundFrame, room?: string, offset?: number): void {
    if (this.state !== "connected") return;
    if (offset !== undefined && room !== undefined) {
      const gate = this.gates?.get(room);
      if (gate !== undefined) {
        const verdict = gate.admit(offset, frame);
        if (verdict === "duplicate") return;
        if (verdict === "held") {
          // Live messages wait while history is replayed; a replay that cannot keep up with them ends here.
          if (gate.heldCount > MAX_HELD)
            this.close(CloseCode.SlowConsumer, "slow consumer: too far behind during recovery");
          return;
        }
      }
    }
    this.send(frame);
  }

  /** For replays: waits while the frame would not fit in the socket's queue, instead of closing as a slow consumer. */
  async sendPaced(frame: OutboundFrame): Promise<boolean> {
    const bytes = this.wire(frame);
    const limit = this.host.settings.outboundQueueBytes;
    while (
      this.state === "connected" &&
      this.socket.writableLength > 0 &&
      this.socket.writableLength + bytes.length > limit
    ) {
      // Held frames would never drain while corked: send them now.
      this.host.batcher.flush(this.writer);
      if (this.socket.writableLength + bytes.length <= limit) break;
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
    if (this.state !== "connected" || this.ws.readyState !== OPEN) return false;
    this.write(bytes);
    return true;
  }

  private send(frame: OutboundFrame): void {
    // Past the close handshake's start, nothing more may be written (ws already sent or queued its close).
    if (this.ws.readyState !== OPEN) return;
    const bytes = this.wire(frame);
    const limit = this.host.settings.outboundQueueBytes;
    if (this.socket.writableLength + bytes.length > limit) {
      // Frames held for coalescing count too: hand them to the kernel first.
      this.host.batcher.flush(this.writer);
      if (this.socket.writableLength + bytes.length > limit) {
        this.close(CloseCode.SlowConsumer, "slow consumer: outbound queue over its limit");
        return;
      }
    }
    this.write(bytes);
  }

  /** The shared, complete WebSocket frame in this connection's subprotocol. */
  private wire(frame: OutboundFrame): Buffer {
    return this.binary ? frame.msgpackWire() : frame.jsonWire();
  }

  /**
   * Writes a complete frame straight to the socket: no per-recipient header or
   * copy. Safe because ws writes each frame of its own synchronously (no
   * compression here), so frames never interleave.
   */
  private write(bytes: Buffer): void {
    this.host.batcher.hold(this.writer);
    this.socket.write(bytes);
  }

  roomRemoved(room: string): void {
    if (this.state !== "connected" || !this.rooms.delete(room)) return;
    this.gates?.delete(room);
    this.host.hub.unsubscribe(this, room);
    this.host.roomLeft(this, room);
    this.writeFrame({ op: "unsubscribed", room });
  }

  disconnect(code: number, reason: string): void {
    this.close(code, reason);
  }

  /**
   * A reply, error or notice for this connection only: encoded and framed here
   * and written in one piece, like publications (ws.send would write its
   * header and the payload as two chunks).
   */
  private writeFrame(frame: ServerFrame): void {
    if (this.state === "closed" || this.ws.readyState !== OPEN) return;
    this.write(
      this.binary ? wsFrame(encodeServerFrameMsgpack(frame), OPCODE_BINARY) : wsTextFrame(encodeServerFrame(frame)),
    );
  }

  /** Sends a command's success reply: only to commands with an id, except `connected` (forced), which every client needs. */
  private reply(id: number | undefined, frame: ReplyFrame, force = false): void {
    if (id === undefined && !force) return;
    this.writeFrame(id === undefined ? frame : { ...frame, id });
  }

  private error(id: number | undefined, code: ErrorCode, message: string): void {
    this.writeFrame(id === undefined ? { op: "error", code, message } : { op: "error", id, code, message });
  }

  private fail(id: number | undefined, error: unknown): void {
    if (error instanceof ProtocolError) {
      this.error(id, error.code, error.message);
      return;
    }
    this.logger.error({ err: error }, "command failed");
    this.error(id, "internal", "internal error");
  }

  // ---- closing -------------------------------------------------------------

  /** Closes the connection with a protocol close code. Idempotent. */
  close(code: number, reason: string): void {
    if (this.state === "closed") return;
    this.logger.debug({ code, reason }, "closing");
    this.closeCode = code;
    this.ws.close(code, reason);
    this.onClosed();
  }

  /** Drops the connection without a close handshake (shutdown of a stuck socket). */
  terminate(): void {
    this.closeCode ??= 1006;
    this.ws.terminate();
    this.onClosed();
  }

  private onClosed(): void {
    if (this.state === "closed") return;
    const wasConnected = this.state === "connected";
    this.state = "closed";
    clearTimeout(this.connectTimer);
    this.keepalive.stop();
    this.waiting.length = 0;
    this.gates = undefined;
    if (wasConnected) {
      this.host.hub.removeMember(this, this.rooms);
      for (const room of this.rooms) this.host.roomLeft(this, room);
    }
    this.rooms.clear();
    this.host.sessionClosed(this);
  }
}

function notSubscribed(room: string): ProtocolError {
  return new ProtocolError("not_subscribed", `not subscribed to '${room}'`);
}
