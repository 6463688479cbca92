// A programmable application backend for proxy tests: each path answers as
// the test says (an answer, a status, a delay, a body that is not JSON, an
// answer held until the test releases it), and
// every call is recorded with its body and headers, so a test can wait for a
// call by event.

import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface BackendCall {
  path: string;
  body: Record<string, unknown>;
  headers: IncomingHttpHeaders;
}

export interface Reply {
  status?: number;
  /** Sent as JSON unless `raw` is given. */
  json?: unknown;
  raw?: string;
  /** Answer after this long; the test's close() ends it sooner. */
  delayMs?: number;
}

/** An answer now, or a promise of one (a test holding the backend's answer until it is ready). */
export type Handler = (call: BackendCall) => Reply | Promise<Reply>;

export class TestBackend {
  readonly calls: BackendCall[] = [];
  private readonly handlers = new Map<string, Handler>();
  private readonly waiters: Array<{ match: (call: BackendCall) => boolean; resolve: (call: BackendCall) => void }> = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private server: Server | undefined;
  url = "";

  /** Answers `path` with `handler` from now on. */
  on(path: string, handler: Handler): void {
    this.handlers.set(path, handler);
  }

  /** Resolves with the first call (past or future) that matches, after those already taken by `after`. */
  waitFor(match: (call: BackendCall) => boolean, after = 0, timeoutMs = 10_000): Promise<BackendCall> {
    const seen = this.calls.slice(after).find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching backend call within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        match,
        resolve: (call) => {
          clearTimeout(timer);
          resolve(call);
        },
      });
    });
  }

  count(path: string): number {
    return this.calls.filter((call) => call.path === path).length;
  }

  async start(): Promise<void> {
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        const path = request.url ?? "/";
        const text = Buffer.concat(chunks).toString("utf8");
        const call: BackendCall = { path, body: text === "" ? {} : JSON.parse(text), headers: request.headers };
        this.calls.push(call);
        for (let i = 0; i < this.waiters.length; i++) {
          const waiter = this.waiters[i];
          if (waiter?.match(call)) {
            this.waiters.splice(i, 1);
            waiter.resolve(call);
            break;
          }
        }
        const handler: Handler = this.handlers.get(path) ?? (() => ({ status: 404 }));
        void Promise.resolve(handler(call)).then((reply) => this.answer(response, reply));
      });
    });
    const server = this.server;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  private answer(response: ServerResponse, reply: Reply): void {
    const send = (): void => {
      if (response.destroyed) return;
      response.writeHead(reply.status ?? 200, { "Content-Type": "application/json" });
      response.end(reply.raw ?? JSON.stringify(reply.json ?? {}));
    };
    if (reply.delayMs === undefined) {
      send();
      return;
    }
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      send();
    }, reply.delayMs);
    this.timers.add(timer);
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    const server = this.server;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
