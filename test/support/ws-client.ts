// A raw protocol client for tests: sends frames as written and waits for the
// frames a test expects, by event, with a deadline that turns a hang into a
// failure naming what was awaited.

import type { Socket } from "node:net";
import type { ServerFrame } from "crier-protocol";
import { decodeServerFrameMsgpack, encodeServerFrameMsgpack } from "crier-protocol/msgpack";
import { type PerMessageDeflateOptions, WebSocket } from "ws";

export interface Closed {
  code: number;
  reason: string;
}

type Waiter = { match: (frame: ServerFrame) => boolean; resolve: (frame: ServerFrame) => void };

export class TestClient {
  readonly ws: WebSocket;
  /** Every frame received, in order. */
  readonly frames: ServerFrame[] = [];
  readonly closed: Promise<Closed>;
  private readonly waiters: Waiter[] = [];
  private cursor = 0;
  /** Binary frames received (MessagePack subprotocol). */
  binaryFrames = 0;
  private nextId = 1;
  /** The TCP socket under the WebSocket, once upgraded (bytes on the wire: `bytesRead`). */
  socket: Socket | undefined;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.once("upgrade", (response) => {
      this.socket = response.socket;
    });
    this.closed = new Promise((resolve) => {
      ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    ws.on("message", (data, isBinary) => {
      const frame = isBinary
        ? (decodeServerFrameMsgpack(data as Buffer) ??
          ({ op: "error", code: "internal", message: "undecodable" } as ServerFrame))
        : (JSON.parse(String(data)) as ServerFrame);
      this.binaryFrames += isBinary ? 1 : 0;
      this.frames.push(frame);
      for (let i = 0; i < this.waiters.length; i++) {
        const waiter = this.waiters[i];
        if (waiter?.match(frame)) {
          this.waiters.splice(i, 1);
          waiter.resolve(frame);
          return;
        }
      }
    });
  }

  static open(
    url: string,
    options: {
      protocols?: string | string[];
      headers?: Record<string, string>;
      localAddress?: string;
      /** What the client offers of permessage-deflate (ws's default: offered). */
      perMessageDeflate?: boolean | PerMessageDeflateOptions;
    } = {},
  ): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, options.protocols ?? [], {
        headers: options.headers,
        localAddress: options.localAddress,
        ...(options.perMessageDeflate === undefined ? {} : { perMessageDeflate: options.perMessageDeflate }),
      });
      const client = new TestClient(ws);
      ws.once("open", () => resolve(client));
      ws.once("error", reject);
      ws.once("unexpected-response", (_request, response) => {
        reject(
          Object.assign(new Error(`upgrade refused with HTTP ${response.statusCode}`), { status: response.statusCode }),
        );
      });
    });
  }

  /** Opens a connection and completes the handshake. */
  static async connect(url: string, connect: Record<string, unknown> = {}): Promise<TestClient> {
    const client = await TestClient.open(url);
    const reply = await client.call({ op: "connect", ...connect });
    if (reply.op !== "connected") throw new Error(`connect failed: ${JSON.stringify(reply)}`);
    return client;
  }

  /** Sends a frame in the connection's subprotocol: MessagePack when negotiated, else JSON. */
  send(frame: Record<string, unknown>): void {
    if (this.ws.protocol === "crier.v1.msgpack") this.ws.send(encodeServerFrameMsgpack(frame), { binary: true });
    else this.ws.send(JSON.stringify(frame));
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  /** Sends a command with a fresh id and waits for the reply with that id. */
  async call(frame: Record<string, unknown>, timeoutMs = 5000): Promise<ServerFrame> {
    const id = this.nextId++;
    const reply = this.waitFor((f) => "id" in f && f.id === id, `reply to ${String(frame.op)} #${id}`, timeoutMs);
    this.send({ ...frame, id });
    return reply;
  }

  /** Waits for the first frame, received from now on, that matches. */
  waitFor(match: (frame: ServerFrame) => boolean, what: string, timeoutMs = 5000): Promise<ServerFrame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = this.waiters.indexOf(waiter);
        if (index !== -1) this.waiters.splice(index, 1);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const waiter: Waiter = {
        match,
        resolve: (frame) => {
          clearTimeout(timer);
          resolve(frame);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** The first frame, received already or from now on, that matches. */
  async seen(match: (frame: ServerFrame) => boolean, what: string, timeoutMs = 5000): Promise<ServerFrame> {
    const earlier = this.frames.find(match);
    return earlier ?? this.waitFor(match, what, timeoutMs);
  }

  /** Waits for the next frame with this op that was not yet taken by `next`. */
  async next(op: ServerFrame["op"], timeoutMs = 5000): Promise<ServerFrame> {
    for (; this.cursor < this.frames.length; this.cursor++) {
      const frame = this.frames[this.cursor];
      if (frame?.op === op) {
        this.cursor++;
        return frame;
      }
    }
    const frame = await this.waitFor((f) => f.op === op, `a '${op}' frame`, timeoutMs);
    // More frames may have arrived before this continuation ran: resume after this one.
    this.cursor = this.frames.lastIndexOf(frame) + 1;
    return frame;
  }

  /** Frames with this op received so far. */
  all(op: ServerFrame["op"]): ServerFrame[] {
    return this.frames.filter((frame) => frame.op === op);
  }

  /** Waits for the close, with a deadline. */
  async waitClosed(timeoutMs = 5000): Promise<Closed> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`connection not closed within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.closed, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.ws.close(1000);
  }
}
