// The HTTP servers crier listens with: its own (upgrades and requests on one
// port), an application's server it attaches to, and the optional /metrics
// listener (metricsPort).

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** What crier serves on a server: each returns false for a path that is not its own. */
export interface Handlers {
  handleUpgrade(request: IncomingMessage, socket: Socket, head: Buffer): boolean;
  handleRequest(request: IncomingMessage, response: ServerResponse): boolean;
}

/**
 * Serves `handlers` from an existing HTTP server: crier's requests ahead of
 * the server's own request handlers, which still see every other request.
 */
export function attachTo(server: Server, handlers: Handlers): void {
  const existing = server.listeners("request") as ((req: IncomingMessage, res: ServerResponse) => void)[];
  server.removeAllListeners("request");
  server.on("request", (request: IncomingMessage, response: ServerResponse) => {
    if (handlers.handleRequest(request, response)) return;
    if (existing.length === 0) {
      response.writeHead(404, { "Content-Type": "application/json" });
      response.end(JSON.stringify({ error: { code: "bad_request", message: "not found" } }));
      return;
    }
    for (const listener of existing) listener.call(server, request, response);
  });
  server.on("upgrade", (request: IncomingMessage, socket: Socket, head: Buffer) => {
    if (!handlers.handleUpgrade(request, socket, head) && server.listeners("upgrade").length === 1) socket.destroy();
  });
}

/** crier's own server, with timeouts that keep idle and dribbling clients from holding it. */
export function createCrierServer(handlers: Handlers): Server {
  const server = createServer();
  // Keep-alive sockets of API callers should not hold a shutdown for long.
  server.keepAliveTimeout = 5000;
  // A client that dribbles its headers or body (slowloris) is cut off, not waited for.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  attachTo(server, handlers);
  return server;
}

/** A server answering GET /metrics only, with `serve`. */
export function createMetricsServer(serve: (request: IncomingMessage, response: ServerResponse) => void): Server {
  return createServer((request, response) => {
    if ((request.url ?? "/").split("?")[0] === "/metrics") serve(request, response);
    else response.writeHead(404, { "Content-Type": "text/plain" }).end("only /metrics here\n");
  });
}

/** Listens on `port` (0: any free one) and `host`; rejects with the listen error (e.g. EADDRINUSE). */
export function listenOn(server: Server, port: number, host: string | undefined): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/** Stops `server` accepting, resolving once its connections are gone. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
