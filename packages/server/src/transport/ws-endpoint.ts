// The WebSocket endpoint: accepts upgrades on the configured path, applies the
// origin policy (origin.ts) and the connection limits (limits/admission.ts)
// before any WebSocket is made, negotiates the subprotocol (and
// permessage-deflate when enabled) and hands each connection, as a
// WsConnection, to `onConnection`.

import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK } from "crier-protocol";
import type { Logger } from "pino";
import { WebSocketServer } from "ws";
import { type FrameDeflater, negotiatedWindowBits } from "../hub/ws-deflate.js";
import type { ConnectionAdmission } from "../limits/admission.js";
import type { Refusals } from "../limits/refusals.js";
import type { WriteBatcher } from "../session/write-batcher.js";
import { clientAddress } from "./client-address.js";
import type { OriginPolicy } from "./origin.js";
import { WsConnection } from "./ws-connection.js";

export interface EndpointOptions {
  path: string;
  maxFrameBytes: number;
  /** Whether a browser page of the request's Origin may connect (origin.ts). */
  originAllowed: OriginPolicy;
  admission: ConnectionAdmission;
  /** Proxies whose X-Forwarded-For is believed (client-address.ts). */
  trustProxy: number;
  refusals: Refusals;
  logger: Logger;
  /** Told of each refused upgrade an operator should hear about (the console's warnings). */
  onRefused?: (kind: "origin_refused" | "connection_limit", detail: string) => void;
  /** The connections' write coalescing and outbound bound (ws-connection.ts). */
  batcher: WriteBatcher;
  outboundQueueBytes: number;
  /** Offers permessage-deflate when set (delivery.compression); frames are compressed by it, not by ws. */
  deflater?: FrameDeflater | undefined;
}

/** A new WebSocket connection, and the upgrade request it came with. */
export type ConnectionHandler = (connection: WsConnection, request: IncomingMessage) => void;

const SUPPORTED = [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK];

export class WsEndpoint {
  private readonly wss: WebSocketServer;
  private readonly options: EndpointOptions;
  private readonly onConnection: ConnectionHandler;
  private accepting = true;
  /** The Sec-WebSocket-Extensions answer of upgrades under way, read from ws's response headers. */
  private readonly extensionAnswers = new WeakMap<IncomingMessage, string>();

  constructor(options: EndpointOptions, onConnection: ConnectionHandler) {
    this.options = options;
    this.onConnection = onConnection;
    this.wss = new WebSocketServer({
      noServer: true,
      // Frames over maxFrameBytes are refused by the session with 4009. ws itself
      // closes with 1009 only past twice the limit, so a frame's size is checked
      // by us (with the protocol's code) while memory per frame stays bounded.
      maxPayload: Math.max(options.maxFrameBytes * 2, options.maxFrameBytes + 1024),
      // ws only negotiates the extension and inflates what clients send: crier
      // never calls ws.send, so ws compresses nothing. Each message is deflated
      // on its own (which is what lets one frame serve every socket), so the
      // server promises no context takeover and clients may drop their window.
      perMessageDeflate:
        options.deflater !== undefined ? { serverNoContextTakeover: true, threshold: Number.MAX_SAFE_INTEGER } : false,
      clientTracking: false,
      handleProtocols: (offered) => {
        for (const protocol of offered) if (SUPPORTED.includes(protocol)) return protocol;
        return false;
      },
    });
    this.wss.on("headers", (headers, request) => {
      const answer = headers.find((line) => line.toLowerCase().startsWith("sec-websocket-extensions:"));
      if (answer !== undefined) this.extensionAnswers.set(request, answer.slice(answer.indexOf(":") + 1));
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
    if (!this.options.originAllowed(origin, request.headers.host)) {
      this.options.refusals.record("origin", { origin }, "connection refused: origin not allowed");
      this.options.onRefused?.("origin_refused", `origin ${origin} from ${socket.remoteAddress ?? "unknown"}`);
      reject(
        socket,
        403,
        "Forbidden",
        `origin ${origin} is not allowed: only pages of this host may connect unless allowedOrigins lists the origin`,
      );
      return true;
    }
    const offered = request.headers["sec-websocket-protocol"];
    if (offered !== undefined && !offered.split(",").some((p) => SUPPORTED.includes(p.trim()))) {
      reject(socket, 400, "Bad Request", `unsupported subprotocol; this server speaks ${SUPPORTED.join(", ")}`);
      return true;
    }
    const address = clientAddress(request, this.options.trustProxy);
    const refusal = this.options.admission.admit(address);
    if (refusal !== undefined) {
      this.options.onRefused?.("connection_limit", `${address}: ${refusal.message}`);
      reject(socket, refusal.status, STATUS_TEXT[refusal.status], refusal.message, refusal.retryAfter);
      return true;
    }
    this.options.admission.hold(address, socket);
    this.wss.handleUpgrade(request, socket, head, (ws) => {
      // Disable Nagle: frames are already coalesced per tick by the session.
      socket.setNoDelay(true);
      const windowBits = negotiatedWindowBits(this.extensionAnswers.get(request));
      this.extensionAnswers.delete(request);
      const { deflater, batcher, outboundQueueBytes } = this.options;
      const deflate = deflater === undefined || windowBits === undefined ? undefined : { deflater, windowBits };
      this.onConnection(new WsConnection(ws, socket, { batcher, outboundQueueBytes, deflate }), request);
    });
    return true;
  }

  /** Refuses new connections from now on (graceful shutdown). */
  stopAccepting(): void {
    this.accepting = false;
  }

  /** Number of addresses with open connections (for tests of the per-address index). */
  addressCount(): number {
    return this.options.admission.addressCount();
  }

  close(): void {
    this.accepting = false;
    this.wss.close();
  }
}

const CODES: Record<number, string> = { 400: "bad_request", 403: "forbidden", 429: "rate_limited", 503: "unavailable" };
const STATUS_TEXT = { 429: "Too Many Requests", 503: "Service Unavailable" } as const;

/** Answers an upgrade request with an HTTP error instead of a WebSocket. */
function reject(socket: Socket, status: number, text: string, message: string, retryAfter?: number): void {
  const body = JSON.stringify({ error: { code: CODES[status] ?? "bad_request", message } });
  const retry = retryAfter === undefined ? "" : `Retry-After: ${retryAfter}\r\n`;
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\n${retry}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
