// The WebSocket endpoint: accepts upgrades on the configured path, applies the
// origin policy and the per-address connection limit before any WebSocket is
// made, negotiates the subprotocol and hands each socket to `onConnection`.

import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK } from "crier-protocol";
import type { Logger } from "pino";
import { type WebSocket, WebSocketServer } from "ws";

export interface EndpointOptions {
  path: string;
  maxFrameBytes: number;
  maxConnectionsPerIp: number;
  /** Origin header values allowed to connect; undefined or ["*"] allows any. */
  allowedOrigins: readonly string[] | undefined;
  logger: Logger;
  /** Told of each refused upgrade an operator should hear about (the console's warnings). */
  onRefused?: (kind: "origin_refused" | "connection_limit", detail: string) => void;
}

export type ConnectionHandler = (ws: WebSocket, socket: Socket, request: IncomingMessage) => void;

const SUPPORTED = [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK];

export class WsEndpoint {
  private readonly wss: WebSocketServer;
  private readonly options: EndpointOptions;
  private readonly perAddress = new Map<string, number>();
  private readonly onConnection: ConnectionHandler;
  private accepting = true;

  constructor(options: EndpointOptions, onConnection: ConnectionHandler) {
    this.options = options;
    this.onConnection = onConnection;
    this.wss = new WebSocketServer({
      noServer: true,
      // Frames over maxFrameBytes are refused by the session with 4009. ws itself
      // closes with 1009 only past twice the limit, so a frame's size is checked
      // by us (with the protocol's code) while memory per frame stays bounded.
      maxPayload: Math.max(options.maxFrameBytes * 2, options.maxFrameBytes + 1024),
      perMessageDeflate: false,
      clientTracking: false,
      handleProtocols: (offered) => {
        for (const protocol of offered) if (SUPPORTED.includes(protocol)) return protocol;
        return false;
      },
    });
  }

  /** Handles an HTTP upgrade; returns false when the request is not for this endpoint. */
  handleUpgrade(request: IncomingMessage, socket: Socket, head: Buffer): boolean {
    const path = (request.url ?? "/").split("?")[0];
    if (path !== this.options.path) return false;
    if (!this.accepting) {
      reject(socket, 503, "Service Unavailable", "the server is shutting down");
      return true;
    }
    const origin = request.headers.origin;
    const allowed = this.options.allowedOrigins;
    if (origin !== undefined && allowed !== undefined && !allowed.includes("*") && !allowed.includes(origin)) {
      this.options.logger.info({ origin }, "connection refused: origin not allowed");
      this.options.onRefused?.("origin_refused", `origin ${origin} from ${socket.remoteAddress ?? "unknown"}`);
      reject(socket, 403, "Forbidden", `origin ${origin} is not allowed (allowedOrigins)`);
      return true;
    }
    const offered = request.headers["sec-websocket-protocol"];
    if (offered !== undefined && !offered.split(",").some((p) => SUPPORTED.includes(p.trim()))) {
      reject(socket, 400, "Bad Request", `unsupported subprotocol; this server speaks ${SUPPORTED.join(", ")}`);
      return true;
    }
    const address = socket.remoteAddress ?? "unknown";
    const count = this.perAddress.get(address) ?? 0;
    if (count >= this.options.maxConnectionsPerIp) {
      this.options.logger.warn({ address }, "connection refused: per-address limit reached");
      this.options.onRefused?.("connection_limit", `${address} over limits.maxConnectionsPerIp`);
      reject(socket, 429, "Too Many Requests", "too many connections from this address (limits.maxConnectionsPerIp)");
      return true;
    }
    this.countUntilClosed(address, socket, count);
    this.wss.handleUpgrade(request, socket, head, (ws) => {
      // Disable Nagle: frames are already coalesced per tick by the session.
      socket.setNoDelay(true);
      this.onConnection(ws, socket, request);
    });
    return true;
  }

  /**
   * Counts `socket` against its address until it closes. A method of its own
   * so that the listener's closure holds the address only: one made in
   * handleUpgrade would share its scope, and keep the upgrade request and its
   * headers alive for as long as the connection lives.
   */
  private countUntilClosed(address: string, socket: Socket, count: number): void {
    this.perAddress.set(address, count + 1);
    socket.once("close", () => {
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(address);
      else this.perAddress.set(address, left);
    });
  }

  /** Refuses new connections from now on (graceful shutdown). */
  stopAccepting(): void {
    this.accepting = false;
  }

  /** Number of addresses with open connections (for tests of the per-address index). */
  addressCount(): number {
    return this.perAddress.size;
  }

  close(): void {
    this.accepting = false;
    this.wss.close();
  }
}

const CODES: Record<number, string> = { 400: "bad_request", 403: "forbidden", 429: "rate_limited", 503: "unavailable" };

/** Answers an upgrade request with an HTTP error instead of a WebSocket. */
function reject(socket: Socket, status: number, text: string, message: string): void {
  const body = JSON.stringify({ error: { code: CODES[status] ?? "bad_request", message } });
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
