// Test support: a scriptable stand-in for a crier server. It speaks the wire format by
// hand, so each test decides every reply, close and silence the SDK has to cope with.
// Only `connect` is answered on its own (unless autoConnect is false).

import type { AddressInfo } from "node:net";
import { type WebSocket, WebSocketServer } from "ws";
import { Inbox } from "./inbox.js";

export type Frame = { [key: string]: unknown };

export interface FakeServerOptions {
  /** 0 (default) picks a free port; pass an old server's port to restart "the same" server. */
  port?: number;
  /** Answer `connect` with `connected` (default true). */
  autoConnect?: boolean;
  /** The `ping` interval announced in `connected`, in seconds (default 25). */
  ping?: number;
}

export class FakeConnection {
  readonly socket: WebSocket;
  /** Every frame received, in order, read or not. */
  readonly received: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly #inbox = new Inbox<Frame>();

  constructor(socket: WebSocket, onFrame: (connection: FakeConnection, frame: Frame) => void) {
    this.socket = socket;
    this.closed = new Promise((resolve) => {
      socket.on("close", (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    socket.on("message", (data, isBinary) => {
      const frame = JSON.parse(isBinary ? "null" : data.toString()) as Frame;
      this.received.push(frame);
      this.#inbox.push(frame);
      onFrame(this, frame);
    });
  }

  /** The next unread frame with this op (any op when omitted). */
  next(op?: string): Promise<Frame> {
    return this.#inbox.next((frame) => op === undefined || frame.op === op);
  }

  send(frame: Frame | string): void {
    this.socket.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  close(code: number, reason = ""): void {
    this.socket.close(code, reason);
  }
}

export class FakeServer {
  readonly port: number;
  readonly #wss: WebSocketServer;
  readonly #connections = new Inbox<FakeConnection>();
  readonly #all: FakeConnection[] = [];

  private constructor(wss: WebSocketServer, options: FakeServerOptions) {
    this.#wss = wss;
    this.port = (wss.address() as AddressInfo).port;
    const autoConnect = options.autoConnect ?? true;
    const ping = options.ping ?? 25;
    wss.on("connection", (socket) => {
      const connection = new FakeConnection(socket, (conn, frame) => {
        if (autoConnect && frame.op === "connect") {
          conn.send({ op: "connected", id: frame.id, client: `c${this.#all.length}`, user: "u1", node: "fake", ping });
        }
      });
      this.#all.push(connection);
      this.#connections.push(connection);
    });
  }

  static start(options: FakeServerOptions = {}): Promise<FakeServer> {
    return new Promise((resolve, reject) => {
      const wss = new WebSocketServer({ port: options.port ?? 0, host: "127.0.0.1" });
      wss.once("error", reject);
      wss.once("listening", () => resolve(new FakeServer(wss, options)));
    });
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** Every connection accepted so far. */
  get connections(): readonly FakeConnection[] {
    return this.#all;
  }

  /** The next connection not yet taken by a test, now or when it arrives. */
  nextConnection(): Promise<FakeConnection> {
    return this.#connections.next();
  }

  /** Drops every client without a close frame (they see 1006) and frees the port. */
  stop(): Promise<void> {
    for (const client of this.#wss.clients) client.terminate();
    return new Promise((resolve) => this.#wss.close(() => resolve()));
  }
}
