// A raw client of the HTTP fallback for tests: GET /sse with the connect frame,
// frames parsed from the event stream as they arrive, commands POSTed to
// /emulation of any instance. It can stop reading (a slow consumer) and drop
// its stream (a lost client), and answers pings only when told to.

import { request as httpRequest, type IncomingMessage } from "node:http";
import type { ServerFrame } from "crier-protocol";

export interface SseClosed {
  /** From the final `close` event; 1006 when the stream ended without one. */
  code: number;
  reason: string;
}

type Frame = ServerFrame | { op: "close"; code: number; reason: string };

export interface SseOpenOptions {
  headers?: Record<string, string>;
  /** Answer pings with a pong through /emulation (default true). */
  pong?: boolean;
}

export class SseTestClient {
  /** Every frame received, in order, the final `close` event included. */
  readonly frames: Frame[] = [];
  readonly closed: Promise<SseClosed>;
  /** The session id from `connected` ("" before it). */
  session = "";
  readonly response: IncomingMessage;
  private readonly httpUrl: string;
  private readonly waiters: { match: (frame: Frame) => boolean; resolve: (frame: Frame) => void }[] = [];
  private nextId = 1;
  private buffer = "";

  private constructor(httpUrl: string, response: IncomingMessage, pong: boolean) {
    this.httpUrl = httpUrl;
    this.response = response;
    response.setEncoding("utf8");
    this.closed = new Promise((resolve) => {
      let closing: SseClosed | undefined;
      response.on("data", (chunk: string) => {
        this.buffer += chunk;
        for (let end = this.buffer.indexOf("\n\n"); end !== -1; end = this.buffer.indexOf("\n\n")) {
          const event = this.buffer.slice(0, end);
          this.buffer = this.buffer.slice(end + 2);
          const data = event
            .split("\n")
            .filter((line) => line.startsWith("data: "))
            .map((line) => line.slice(6))
            .join("\n");
          const frame = JSON.parse(data) as Frame;
          if (frame.op === "connected" && typeof frame.session === "string") this.session = frame.session;
          if (frame.op === "close") closing = { code: frame.code, reason: frame.reason };
          if (frame.op === "ping" && pong) void this.post([{ op: "pong" }]);
          this.receive(frame);
        }
      });
      const ended = (): void => resolve(closing ?? { code: 1006, reason: "" });
      response.on("end", ended);
      response.on("close", ended);
      response.on("error", () => {});
    });
  }

  /** Opens a stream on `httpUrl` (http://host:port) with `connect` as its connect frame; resolves once the response has begun. */
  static open(
    httpUrl: string,
    connect: Record<string, unknown> = {},
    options: SseOpenOptions = {},
  ): Promise<SseTestClient> {
    const query = encodeURIComponent(JSON.stringify({ op: "connect", ...connect }));
    return new Promise((resolve, reject) => {
      const request = httpRequest(`${httpUrl}/sse?connect=${query}`, { headers: options.headers }, (response) => {
        if (response.statusCode !== 200) {
          response.resume();
          reject(Object.assign(new Error(`GET /sse answered ${response.statusCode}`), { status: response.statusCode }));
          return;
        }
        resolve(new SseTestClient(httpUrl, response, options.pong ?? true));
      });
      request.on("error", reject);
      request.end();
    });
  }

  /** Opens a stream and waits for `connected`. */
  static async connect(
    httpUrl: string,
    connect: Record<string, unknown> = {},
    options: SseOpenOptions = {},
  ): Promise<SseTestClient> {
    const client = await SseTestClient.open(httpUrl, connect, options);
    const reply = await client.seen((frame) => frame.op !== "ping", "the reply to connect");
    if (reply.op !== "connected") throw new Error(`connect failed: ${JSON.stringify(reply)}`);
    return client;
  }

  /** POSTs `frames` to /emulation of `via` (default: the instance holding the stream); resolves with the status and body. */
  async post(frames: unknown[], via = this.httpUrl, session = this.session): Promise<{ status: number; body: string }> {
    const response = await fetch(`${via}/emulation`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ session, frames }),
    });
    return { status: response.status, body: await response.text() };
  }

  /** Sends a command with a fresh id through /emulation of `via` and waits for its reply on the stream. */
  async call(frame: Record<string, unknown>, via = this.httpUrl, timeoutMs = 5000): Promise<Frame> {
    const id = this.nextId++;
    const reply = this.waitFor((f) => "id" in f && f.id === id, `reply to ${String(frame.op)} #${id}`, timeoutMs);
    const posted = await this.post([{ ...frame, id }], via);
    if (posted.status !== 204) throw new Error(`POST /emulation answered ${posted.status}: ${posted.body}`);
    return reply;
  }

  /** The first frame, received already or from now on, that matches. */
  seen(match: (frame: Frame) => boolean, what: string, timeoutMs = 5000): Promise<Frame> {
    const earlier = this.frames.find(match);
    return earlier !== undefined ? Promise.resolve(earlier) : this.waitFor(match, what, timeoutMs);
  }

  /** Waits for the first frame, received from now on, that matches. */
  waitFor(match: (frame: Frame) => boolean, what: string, timeoutMs = 5000): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${JSON.stringify(this.frames)}`));
      }, timeoutMs);
      const waiter = {
        match,
        resolve: (frame: Frame) => {
          clearTimeout(timer);
          resolve(frame);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Waits for the stream to end, with a deadline. */
  async waitClosed(timeoutMs = 5000): Promise<SseClosed> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`stream not ended within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.closed, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops reading the stream: the server's queue for it grows once the kernel buffers are full. */
  pause(): void {
    this.response.pause();
    this.response.socket.pause();
  }

  resume(): void {
    this.response.socket.resume();
    this.response.resume();
  }

  /** Drops the stream without a word, like a client that vanished. */
  drop(): void {
    this.response.destroy();
  }

  private receive(frame: Frame): void {
    this.frames.push(frame);
    const index = this.waiters.findIndex((waiter) => waiter.match(frame));
    const waiter = this.waiters[index];
    if (waiter === undefined) return;
    this.waiters.splice(index, 1);
    waiter.resolve(frame);
  }
}
