// The HTTP fallback's endpoints (docs/protocol.md "HTTP fallback transport"):
// GET /sse opens a session's event stream, POST /emulation carries its client
// frames. Origin policy, CORS, the per-address stream limit and the body bound
// apply before anything else; each refusal an operator should hear about (these,
// and POSTs for unknown sessions) is counted, logged through the throttle and
// told to `onRefused`, as the WebSocket endpoint's are.
//
// Any instance may receive a session's POST. A session id names the instance
// that holds its stream (`<node id>.<random>`), so the receiving instance asks
// that one over the backplane (cluster/control.ts) and answers 204 once the
// holder has taken the frames, or 404 when the holder knows no such session or
// does not answer. The 204 waits for the holder, so two POSTs sent one after
// the other reach the session in that order, whichever instances receive them.

import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { RefusalReason, Refusals } from "../limits/refusals.js";
import type { WriteBatcher } from "../session/write-batcher.js";
import { clientAddress } from "./client-address.js";
import { originAllowed } from "./origin.js";
import { SseConnection } from "./sse-connection.js";

export const SSE_PATH = "/sse";
export const EMULATION_PATH = "/emulation";

/** 144 bits: a session id is all an /emulation POST needs, so it must not be guessable. */
const SESSION_RANDOM_BYTES = 18;

export interface SseEndpointOptions {
  nodeId: string;
  /** Origin header values allowed; undefined or ["*"] allows any. */
  allowedOrigins: readonly string[] | undefined;
  maxConnectionsPerIp: number;
  /** Bound on an /emulation body (limits.maxHttpBodyBytes). */
  maxBodyBytes: number;
  batcher: WriteBatcher;
  outboundQueueBytes: number;
  /** Proxies whose X-Forwarded-For is believed (client-address.ts): the address the per-address limit counts. */
  trustProxy: number;
  refusals: Refusals;
  logger: Logger;
  /** Told of each refused request an operator should hear about (the console's warnings). */
  onRefused?: (kind: SseRefusalKind, detail: string) => void;
}

/** The console's warning kinds for the fallback's refusals (console/warnings.ts). */
export type SseRefusalKind = "origin_refused" | "connection_limit" | "body_too_large" | "unknown_session";

/** Client frames for a session on another instance, as one control request (cluster/control.ts). */
export interface ForwardedFrames {
  session: string;
  frames: unknown[];
}

/** The control methods this endpoint answers: frames forwarded from the instance that received the POST. */
export type SseMethods = { "sse.frames": { request: ForwardedFrames; reply: { delivered: boolean } } };

export interface SseEndpointHost {
  /** A new stream: a session speaks through `connection` from now on. */
  open(connection: SseConnection, request: IncomingMessage): void;
  /**
   * Hands `frames` to `session` on instance `node`: true when it took them,
   * false when it holds no such session; rejects when it did not answer.
   */
  forward(node: string, request: ForwardedFrames): Promise<boolean>;
}

class HttpFailure extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class SseEndpoint {
  private readonly options: SseEndpointOptions;
  private readonly host: SseEndpointHost;
  private readonly streams = new Map<string, SseConnection>();
  private readonly perAddress = new Map<string, number>();
  private accepting = true;

  constructor(options: SseEndpointOptions, host: SseEndpointHost) {
    this.options = options;
    this.host = host;
  }

  /** Handles /sse and /emulation; returns false for other paths. */
  handle(request: IncomingMessage, response: ServerResponse): boolean {
    const url = new URL(request.url ?? "/", "http://localhost");
    const path = url.pathname;
    if (path !== SSE_PATH && path !== EMULATION_PATH) return false;
    const method = request.method ?? "GET";
    const wanted = path === SSE_PATH ? "GET" : "POST";
    try {
      if (!originAllowed(request, this.options.allowedOrigins)) {
        const origin = request.headers.origin;
        this.refused(request, "origin", "origin_refused", `origin ${origin} on ${path}`, { origin, path });
        throw new HttpFailure(403, "forbidden", `origin ${origin} is not allowed (allowedOrigins)`);
      }
      allowOrigin(request, response);
      if (method === "OPTIONS") {
        preflight(response, wanted);
        return true;
      }
      if (method !== wanted) {
        response.setHeader("Allow", `${wanted}, OPTIONS`);
        throw new HttpFailure(405, "bad_request", `${path} takes ${wanted}, not ${method}`);
      }
      if (path === SSE_PATH) this.stream(request, response, url);
      else this.emulate(request, response).catch((error: unknown) => this.fail(response, error));
    } catch (error) {
      this.fail(response, error);
    }
    return true;
  }

  /** Frames forwarded by another instance: handed to the session when this instance holds it. */
  receiveForwarded(request: unknown): { delivered: boolean } {
    const body = forwardedFrames(request);
    return { delivered: body !== undefined && this.deliver(body.session, body.frames) };
  }

  /** Refuses new streams from now on (graceful shutdown); open ones end with their sessions. */
  stopAccepting(): void {
    this.accepting = false;
  }

  /** Open streams on this instance. */
  streamCount(): number {
    return this.streams.size;
  }

  private stream(request: IncomingMessage, response: ServerResponse, url: URL): void {
    if (!this.accepting) throw new HttpFailure(503, "unavailable", "the server is shutting down");
    const connect = url.searchParams.get("connect");
    if (connect === null) {
      throw new HttpFailure(400, "bad_request", "missing query parameter 'connect': the URL-encoded connect frame");
    }
    const address = clientAddress(request, this.options.trustProxy);
    const count = this.perAddress.get(address) ?? 0;
    if (count >= this.options.maxConnectionsPerIp) {
      const limit = `${this.options.maxConnectionsPerIp} streams per address (limits.maxConnectionsPerIp)`;
      this.refused(request, "max_connections_per_ip", "connection_limit", limit, {});
      throw new HttpFailure(429, "rate_limited", "too many streams from this address (limits.maxConnectionsPerIp)");
    }
    const session = `${this.options.nodeId}.${randomBytes(SESSION_RANDOM_BYTES).toString("base64url")}`;
    response.writeHead(200, {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-cache",
      // nginx buffers proxied responses unless told not to; an event must leave when it is written.
      "X-Accel-Buffering": "no",
      // A stream's connection is not reused: closed when the stream ends, it does not hold up a shutdown.
      Connection: "close",
    });
    response.flushHeaders();
    // Events are coalesced per tick by the batcher already.
    request.socket.setNoDelay(true);
    const connection = new SseConnection(response, session, {
      batcher: this.options.batcher,
      outboundQueueBytes: this.options.outboundQueueBytes,
    });
    this.track(session, connection, address, count);
    this.host.open(connection, request);
    connection.receive([Buffer.from(connect)]);
  }

  /** A method of its own so the close listener's closure does not keep the request alive. */
  private track(session: string, connection: SseConnection, address: string, count: number): void {
    this.streams.set(session, connection);
    this.perAddress.set(address, count + 1);
    connection.onEnded(() => {
      this.streams.delete(session);
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(address);
      else this.perAddress.set(address, left);
    });
  }

  private async emulate(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const limit = this.options.maxBodyBytes;
    const body = forwardedFrames(
      await readJson(request, limit).catch((error: unknown) => {
        if (error instanceof HttpFailure && error.status === 413) {
          this.refused(request, "body_too_large", "body_too_large", `POST /emulation body over ${limit} bytes`, {});
        }
        throw error;
      }),
    );
    if (body === undefined) {
      throw new HttpFailure(400, "bad_request", 'the body must be {"session": string, "frames": [command, …]}');
    }
    const dot = body.session.lastIndexOf(".");
    const node = body.session.slice(0, dot);
    let delivered: boolean;
    if (dot <= 0) delivered = false;
    else if (node === this.options.nodeId) delivered = this.deliver(body.session, body.frames);
    else {
      delivered = await this.host.forward(node, body).catch((error: unknown) => {
        this.options.logger.debug({ err: error, node }, "emulation: the session's instance did not answer");
        return false;
      });
    }
    if (!delivered) {
      this.refused(request, "unknown_session", "unknown_session", `POST /emulation for session ${body.session}`, {});
      throw new HttpFailure(404, "not_found", "no such session: it ended, or its instance is gone; open a new stream");
    }
    response.writeHead(204);
    response.end();
  }

  /** Counts a refusal for the metrics, logs it through the throttle and tells the console. */
  private refused(
    request: IncomingMessage,
    reason: RefusalReason,
    kind: SseRefusalKind,
    what: string,
    fields: Record<string, unknown>,
  ): void {
    const address = clientAddress(request, this.options.trustProxy);
    this.options.refusals.record(reason, { ...fields, address }, `HTTP fallback request refused: ${what}`);
    this.options.onRefused?.(kind, `${address}: ${what}`);
  }

  private deliver(session: string, frames: readonly unknown[]): boolean {
    const connection = this.streams.get(session);
    if (connection === undefined) return false;
    return connection.receive(frames.map((frame) => Buffer.from(JSON.stringify(frame))));
  }

  private fail(response: ServerResponse, error: unknown): void {
    if (response.headersSent) {
      response.destroy();
      return;
    }
    const failure = error instanceof HttpFailure ? error : new HttpFailure(500, "internal", "internal error");
    if (!(error instanceof HttpFailure)) this.options.logger.error({ err: error }, "HTTP fallback request failed");
    const text = JSON.stringify({ error: { code: failure.code, message: failure.message } });
    response.writeHead(failure.status, {
      "Content-Type": "application/json",
      "Content-Length": Buffer.byteLength(text),
    });
    response.end(text);
  }
}

/** CORS: a browser page of an allowed origin may read the answers, with its cookies (the authenticate hook may need them). */
function allowOrigin(request: IncomingMessage, response: ServerResponse): void {
  const origin = request.headers.origin;
  if (origin === undefined) return;
  response.setHeader("Access-Control-Allow-Origin", origin);
  response.setHeader("Access-Control-Allow-Credentials", "true");
  response.setHeader("Vary", "Origin");
}

/** The answer to a CORS preflight, e.g. for a POST with Content-Type application/json. */
function preflight(response: ServerResponse, method: string): void {
  response.writeHead(204, {
    "Access-Control-Allow-Methods": method,
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "600",
  });
  response.end();
}

function forwardedFrames(value: unknown): ForwardedFrames | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { session, frames } = value as Record<string, unknown>;
  if (typeof session !== "string" || !Array.isArray(frames)) return undefined;
  return { session, frames };
}

function readJson(request: IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const tooLarge = new HttpFailure(413, "too_large", `request body over ${limit} bytes (limits.maxHttpBodyBytes)`);
    if (Number(request.headers["content-length"]) > limit) {
      request.resume();
      reject(tooLarge);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    request.on("error", reject);
    request.on("end", () => {
      if (size > limit) {
        reject(tooLarge);
        return;
      }
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      } catch {
        reject(new HttpFailure(400, "bad_request", "request body is not valid JSON"));
      }
    });
  });
}
