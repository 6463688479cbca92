// The HTTP API for backends (docs/protocol.md "HTTP API") and the health endpoints.
// Bodies are size-limited on every route and validated with a schema; the key
// and the limits on wrong keys are api-auth.ts's; every error is
// {"error":{"code","message"}} with a status that fits.

import type { IncomingMessage, ServerResponse } from "node:http";
import { type ErrorCode, isValidRoom, ProtocolError } from "crier-protocol";
import type { Logger } from "pino";
import { z } from "zod";
import { type ConsoleViews, VIEW_LIMIT } from "../console/views.js";
import type { Refusals } from "../limits/refusals.js";
import type { RoomQueries } from "../service/room-queries.js";
import type { RoomService } from "../service/room-service.js";
import { ApiAuth } from "./api-auth.js";
import { clientAddress } from "./client-address.js";
import { DashboardFiles } from "./dashboard.js";

export interface ApiHost {
  isReady(): boolean;
  /** Publish, send, disconnect and unsubscribe: the same path as clients' commands (service/room-service.ts). */
  readonly rooms: Pick<RoomService, "publish" | "send" | "disconnect" | "unsubscribe">;
  /** Presence and history reads (service/room-queries.ts). */
  readonly queries: Pick<RoomQueries, "presence" | "presenceStats" | "history">;
  info(): Promise<unknown>;
  /** The console's cluster-wide views. */
  readonly views: ConsoleViews;
  metrics(): Promise<{ contentType: string; body: string }>;
}

export interface ApiOptions {
  /** Every key accepted (more than one during a rotation). */
  apiKeys: readonly string[];
  maxBodyBytes: number;
  logger: Logger;
  /** Serve GET /dashboard (the console, which calls /api/ with a key the user types). */
  dashboard: boolean;
  /** Serve GET /metrics here (false when it has a listener of its own). */
  metrics: boolean;
  /** GET /metrics needs the API key. */
  metricsRequireKey: boolean;
  /** Requests with a wrong or missing key per address per minute before the address is refused with 429. */
  authFailuresPerMinute: number;
  /** The same across all addresses, before addresses that failed are refused with 429 (api-auth.ts). */
  authFailuresPerMinuteTotal: number;
  /** Proxies whose X-Forwarded-For is believed (client-address.ts). */
  trustProxy: number;
  refusals: Refusals;
}

const STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_subscribed: 400,
  already_subscribed: 400,
  too_large: 413,
  rate_limited: 429,
  unavailable: 503,
  internal: 500,
};

const room = z.string().refine(isValidRoom, "must be 1-200 characters of A-Z a-z 0-9 _ - : . @ / =");
const user = z.string().min(1, "must be a non-empty user id").max(200);
const data = z.unknown().refine((value) => value !== undefined, "is required");

const publishBody = z.object({ room, data }).strict();
const broadcastBody = z.object({ rooms: z.array(room).min(1).max(1000), data }).strict();
const sendBody = z.object({ user, data }).strict();
const disconnectBody = z
  .object({
    user: user.optional(),
    client: z.string().min(1).max(200).optional(),
    code: z.number().int().min(4000).max(4999).default(4004),
    reason: z.string().max(120).default("disconnected by the server"),
  })
  .strict()
  .refine(
    (body) => (body.user === undefined) !== (body.client === undefined),
    "give exactly one of 'user' or 'client'",
  );
const unsubscribeBody = z.object({ user, room }).strict();

/** A ProtocolError with an HTTP status other than its code's usual one, or a Retry-After. */
class HttpError extends ProtocolError {
  readonly status: number | undefined;
  readonly retryAfterSeconds: number | undefined;
  constructor(code: ErrorCode, message: string, status?: number, retryAfterSeconds?: number) {
    super(code, message);
    this.status = status;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export class HttpApi {
  private readonly host: ApiHost;
  private readonly options: ApiOptions;
  private readonly auth: ApiAuth;
  private readonly dashboard: DashboardFiles | undefined;

  constructor(host: ApiHost, options: ApiOptions) {
    this.host = host;
    this.options = options;
    this.auth = new ApiAuth({
      apiKeys: options.apiKeys,
      failuresPerMinute: options.authFailuresPerMinute,
      failuresPerMinuteTotal: options.authFailuresPerMinuteTotal,
      refusals: options.refusals,
    });
    this.dashboard = options.dashboard ? new DashboardFiles() : undefined;
  }

  /** Handles the request when its path belongs to the API; returns false otherwise. */
  handle(request: IncomingMessage, response: ServerResponse): boolean {
    const url = new URL(request.url ?? "/", "http://localhost");
    const path = url.pathname;
    const ours =
      path === "/healthz" ||
      path === "/readyz" ||
      (path === "/metrics" && this.options.metrics) ||
      (this.dashboard !== undefined && (path === "/dashboard" || path.startsWith("/dashboard/"))) ||
      path.startsWith("/api/");
    if (!ours) return false;
    if (!this.bodyWithinLimit(request, response)) return true;
    if (path === "/metrics") {
      this.serveMetrics(request, response);
      return true;
    }
    if (path === "/healthz") {
      this.json(response, 200, { status: "ok" });
      return true;
    }
    if (path === "/readyz") {
      const ready = this.host.isReady();
      this.json(response, ready ? 200 : 503, { status: ready ? "ready" : "not ready" });
      return true;
    }
    if (this.dashboard?.serve(path, response)) return true;
    this.route(request, response, url).catch((error: unknown) => this.fail(response, error));
    return true;
  }

  /** GET /metrics (on the main port, or on its own listener through this method). */
  serveMetrics(request: IncomingMessage, response: ServerResponse): void {
    try {
      if (this.options.metricsRequireKey) this.authenticate(request);
    } catch (error) {
      this.fail(response, error);
      return;
    }
    this.host.metrics().then(
      ({ contentType, body }) => {
        response.writeHead(200, { "Content-Type": contentType });
        response.end(body);
      },
      (error: unknown) => this.fail(response, error),
    );
  }

  /**
   * Refuses a declared body over the limit on any route, and cuts off an
   * undeclared (chunked) one that grows past it: Node reads and discards the
   * body of a request nobody reads, and would do so without end.
   */
  private bodyWithinLimit(request: IncomingMessage, response: ServerResponse): boolean {
    const limit = this.options.maxBodyBytes;
    const declared = Number(request.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      response.setHeader("Connection", "close");
      this.fail(response, new HttpError("too_large", `request body over ${limit} bytes (limits.maxHttpBodyBytes)`));
      return false;
    }
    if (request.headers["transfer-encoding"] !== undefined) {
      let size = 0;
      const watch = (chunk: Buffer): void => {
        size += chunk.length;
        if (size > limit) {
          request.off("data", watch);
          if (!response.headersSent) {
            response.setHeader("Connection", "close");
            this.fail(
              response,
              new HttpError("too_large", `request body over ${limit} bytes (limits.maxHttpBodyBytes)`),
            );
          }
          request.socket.destroySoon();
        }
      };
      request.on("data", watch);
    }
    return true;
  }

  private async route(request: IncomingMessage, response: ServerResponse, url: URL): Promise<void> {
    this.authenticate(request);
    const method = request.method ?? "GET";
    const path = url.pathname;
    const expect = (wanted: string): void => {
      if (method !== wanted) {
        response.setHeader("Allow", wanted);
        throw new HttpError("bad_request", `${path} takes ${wanted}, not ${method}`, 405);
      }
    };
    switch (path) {
      case "/api/publish": {
        expect("POST");
        const body = parse(publishBody, await this.body(request));
        const result = await this.host.rooms.publish(body.room, JSON.stringify(body.data));
        return this.json(response, 200, result);
      }
      case "/api/broadcast": {
        expect("POST");
        const body = parse(broadcastBody, await this.body(request));
        const dataJson = JSON.stringify(body.data);
        const settled = await Promise.allSettled(body.rooms.map((target) => this.host.rooms.publish(target, dataJson)));
        // All refused: the request failed as a whole. Some refused: say which,
        // so a retry can target just those rooms and not duplicate the others.
        const failures = settled.filter((outcome) => outcome.status === "rejected");
        if (failures.length === settled.length && failures[0] !== undefined) throw failures[0].reason;
        const results = settled.map((outcome, i) => {
          const target = body.rooms[i] ?? "";
          if (outcome.status === "fulfilled") return { room: target, ...outcome.value };
          const error =
            outcome.reason instanceof ProtocolError ? outcome.reason : new ProtocolError("internal", "internal error");
          return { room: target, error: { code: error.code, message: error.message } };
        });
        return this.json(response, 200, { results });
      }
      case "/api/send": {
        expect("POST");
        const body = parse(sendBody, await this.body(request));
        await this.host.rooms.send(body.user, JSON.stringify(body.data));
        return this.json(response, 200, {});
      }
      case "/api/disconnect": {
        expect("POST");
        const body = parse(disconnectBody, await this.body(request));
        const target = body.user !== undefined ? { user: body.user } : { client: body.client ?? "" };
        await this.host.rooms.disconnect(target, body.code, body.reason);
        return this.json(response, 200, {});
      }
      case "/api/unsubscribe": {
        expect("POST");
        const body = parse(unsubscribeBody, await this.body(request));
        await this.host.rooms.unsubscribe(body.user, body.room);
        return this.json(response, 200, {});
      }
      case "/api/presence": {
        expect("GET");
        const target = parse(room, url.searchParams.get("room") ?? undefined, "room");
        return this.json(response, 200, { members: await this.host.queries.presence(target) });
      }
      case "/api/presence/stats": {
        expect("GET");
        const target = parse(room, url.searchParams.get("room") ?? undefined, "room");
        return this.json(response, 200, await this.host.queries.presenceStats(target));
      }
      case "/api/history": {
        expect("GET");
        const target = parse(room, url.searchParams.get("room") ?? undefined, "room");
        const since = url.searchParams.get("since");
        const epoch = url.searchParams.get("epoch");
        const limit = url.searchParams.get("limit");
        const position = since === null ? undefined : { offset: integer(since, "since", 0), epoch: epoch ?? "" };
        const reply = await this.host.queries.history(
          target,
          position,
          limit === null ? undefined : integer(limit, "limit", 1),
        );
        return this.json(response, 200, { offset: reply.offset, epoch: reply.epoch, messages: reply.messages });
      }
      case "/api/info": {
        expect("GET");
        return this.json(response, 200, await this.host.info());
      }
      case "/api/stats": {
        expect("GET");
        const since = url.searchParams.get("since");
        return this.json(response, 200, await this.host.views.stats(since === null ? 0 : integer(since, "since", 0)));
      }
      case "/api/rooms": {
        expect("GET");
        const limit = url.searchParams.get("limit");
        const count = limit === null ? 20 : Math.min(integer(limit, "limit", 1), VIEW_LIMIT);
        return this.json(response, 200, await this.host.views.rooms(url.searchParams.get("search") ?? "", count));
      }
      case "/api/subscribers": {
        expect("GET");
        const target = parse(room, url.searchParams.get("room") ?? undefined, "room");
        return this.json(response, 200, await this.host.views.subscribers(target));
      }
      case "/api/connections": {
        expect("GET");
        const target = parse(user, url.searchParams.get("user") ?? undefined, "user");
        return this.json(response, 200, await this.host.views.connections(target));
      }
      case "/api/warnings": {
        expect("GET");
        return this.json(response, 200, await this.host.views.warnings());
      }
      default:
        throw new HttpError("bad_request", `no API endpoint ${path}`, 404);
    }
  }

  private authenticate(request: IncomingMessage): void {
    const refusal = this.auth.check(request, clientAddress(request, this.options.trustProxy));
    if (refusal === undefined) return;
    throw refusal.code === "unauthorized"
      ? new HttpError(refusal.code, refusal.message)
      : new HttpError(refusal.code, refusal.message, undefined, refusal.retryAfterSeconds);
  }

  private body(request: IncomingMessage): Promise<unknown> {
    const limit = this.options.maxBodyBytes;
    return new Promise((resolve, reject) => {
      const declared = Number(request.headers["content-length"]);
      if (Number.isFinite(declared) && declared > limit) {
        request.resume();
        reject(new HttpError("too_large", `request body over ${limit} bytes (limits.maxHttpBodyBytes)`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      let failed = false;
      request.on("data", (chunk: Buffer) => {
        if (failed) return;
        size += chunk.length;
        if (size > limit) {
          failed = true;
          reject(new HttpError("too_large", `request body over ${limit} bytes (limits.maxHttpBodyBytes)`));
          return;
        }
        chunks.push(chunk);
      });
      request.on("error", reject);
      request.on("end", () => {
        if (failed) return;
        const text = Buffer.concat(chunks).toString("utf8");
        try {
          resolve(JSON.parse(text));
        } catch {
          reject(new HttpError("bad_request", "request body is not valid JSON"));
        }
      });
    });
  }

  private json(response: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    response.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
    response.end(text);
  }

  private fail(response: ServerResponse, error: unknown): void {
    if (response.headersSent) {
      response.destroy();
      return;
    }
    if (error instanceof ProtocolError) {
      const status = (error instanceof HttpError ? error.status : undefined) ?? STATUS[error.code];
      const retryAfter = error instanceof HttpError ? error.retryAfterSeconds : undefined;
      if (retryAfter !== undefined) response.setHeader("Retry-After", String(retryAfter));
      this.json(response, status, { error: { code: error.code, message: error.message } });
      return;
    }
    this.options.logger.error({ err: error }, "HTTP API request failed");
    this.json(response, 500, { error: { code: "internal", message: "internal error" } });
  }
}

function parse<T>(schema: z.ZodType<T>, value: unknown, name?: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const path = [name, ...issue.path.map(String)].filter((part) => part !== undefined).join(".");
    if (issue.code === "unrecognized_keys")
      return `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.join(", ")}`;
    return path === "" ? issue.message : `field '${path}' ${issue.message.replace(/^Invalid input: /, "")}`;
  });
  throw new HttpError("bad_request", problems.join("; "));
}

function integer(text: string, name: string, min: number): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min) {
    throw new HttpError("bad_request", `query parameter '${name}' must be an integer >= ${min}`);
  }
  return value;
}
