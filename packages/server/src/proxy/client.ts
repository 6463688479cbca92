// One call to the application's backend: POST a JSON body (with the client's
// forwarded headers) and read one of the three answers docs/protocol.md
// allows. Fails closed: a timeout, a non-200, or a body that is not exactly
// one answer becomes `unavailable`, logged with the URL and the reason and
// counted. Calls use Node's fetch (undici), which keeps connections to the
// backend alive; at most `maxConcurrency` are in flight per instance, and a
// call waiting for a slot counts against the same timeout, so a dead backend
// holds nobody longer than `timeout`.

import { ERROR_CODES, type ErrorCode, type JsonObject, ProtocolError } from "crier-protocol";
import type { Logger } from "pino";
import { DisconnectError } from "../auth/disconnect-error.js";
import { messageOf } from "../describe-error.js";

export type ProxyKind = "connect" | "refresh" | "subscribe" | "publish" | "rpc";

/** How a call ended, for metrics: an answer of one of the three kinds, or a failure by reason. */
export type ProxyOutcome = "result" | "error" | "disconnect" | "timeout" | "status" | "invalid" | "unreachable";

export interface ProxyClientOptions {
  timeoutMs: number;
  maxConcurrency: number;
  logger: Logger;
  /** Called once per call with its outcome and duration. */
  observe?(kind: ProxyKind, outcome: ProxyOutcome, seconds: number): void;
}

/** Bodies over this are not read: no answer is that large. */
const MAX_ANSWER_BYTES = 1024 * 1024;

class Failure extends Error {
  readonly outcome: ProxyOutcome;
  constructor(outcome: ProxyOutcome, message: string) {
    super(message);
    this.outcome = outcome;
  }
}

export class ProxyClient {
  private readonly options: ProxyClientOptions;
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(options: ProxyClientOptions) {
    this.options = options;
  }

  /** Calls in flight now (for tests and metrics). */
  inFlight(): number {
    return this.active;
  }

  /**
   * POSTs `body` to `url`. Resolves with the answer's `result`; rejects with
   * ProtocolError(the backend's code) for an `error` answer, DisconnectError
   * for a `disconnect` answer, and ProtocolError("unavailable") for any failure.
   */
  async call(
    kind: ProxyKind,
    url: string,
    body: JsonObject,
    headers: Readonly<Record<string, string>>,
  ): Promise<JsonObject> {
    const started = performance.now();
    const deadline = AbortSignal.timeout(this.options.timeoutMs);
    let outcome: ProxyOutcome = "unreachable";
    try {
      await this.acquire(deadline);
      try {
        const answer = await this.post(url, body, headers, deadline);
        outcome = answer.kind;
        if (answer.kind === "error") throw new ProtocolError(answer.code, answer.message);
        if (answer.kind === "disconnect") throw new DisconnectError(answer.code, answer.reason);
        return answer.result;
      } finally {
        this.release();
      }
    } catch (error) {
      if (error instanceof ProtocolError || error instanceof DisconnectError) throw error;
      const failure =
        error instanceof Failure
          ? error
          : deadline.aborted
            ? new Failure("timeout", `no answer within ${this.options.timeoutMs} ms`)
            : new Failure("unreachable", messageOf(error));
      outcome = failure.outcome;
      this.options.logger.warn(
        { proxy: kind, url, reason: failure.message },
        `the ${kind} proxy failed: failing closed`,
      );
      throw new ProtocolError("unavailable", `the application's ${kind} proxy is unavailable: try again`);
    } finally {
      this.options.observe?.(kind, outcome, (performance.now() - started) / 1000);
    }
  }

  private async post(
    url: string,
    body: JsonObject,
    headers: Readonly<Record<string, string>>,
    signal: AbortSignal,
  ): Promise<Answer> {
    const response = await fetch(url, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(body),
      signal,
    });
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new Failure("status", `answered ${response.status}, not 200`);
    }
    const length = Number(response.headers.get("content-length") ?? "0");
    if (length > MAX_ANSWER_BYTES) {
      await response.body?.cancel();
      throw new Failure("invalid", `answer of ${length} bytes is over ${MAX_ANSWER_BYTES}`);
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Failure("invalid", `answer is not JSON: ${text.slice(0, 100)}`);
    }
    return parseAnswer(parsed);
  }

  private acquire(signal: AbortSignal): Promise<void> {
    if (this.active < this.options.maxConcurrency) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const take = (): void => {
        signal.removeEventListener("abort", give);
        this.active++;
        resolve();
      };
      const give = (): void => {
        const index = this.waiting.indexOf(take);
        if (index >= 0) this.waiting.splice(index, 1);
        reject(new Failure("timeout", `no free slot within ${this.options.timeoutMs} ms (proxy.maxConcurrency)`));
      };
      signal.addEventListener("abort", give, { once: true });
      this.waiting.push(take);
    });
  }

  private release(): void {
    this.active--;
    this.waiting.shift()?.();
  }
}

type Answer =
  | { kind: "result"; result: JsonObject }
  | { kind: "error"; code: ErrorCode; message: string }
  | { kind: "disconnect"; code: number; reason: string };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Exactly one of `result`, `error` or `disconnect`, each of its documented shape. */
export function parseAnswer(value: unknown): Answer {
  if (!isObject(value)) throw new Failure("invalid", "answer is not a JSON object");
  const keys = Object.keys(value);
  if (keys.length !== 1) {
    throw new Failure(
      "invalid",
      `answer must have exactly one of result, error, disconnect (has ${keys.join(", ") || "none"})`,
    );
  }
  const { result, error, disconnect } = value;
  if (result !== undefined) {
    if (!isObject(result)) throw new Failure("invalid", "'result' is not an object");
    return { kind: "result", result: result as JsonObject };
  }
  if (error !== undefined) {
    if (!isObject(error) || typeof error.code !== "string" || !ERROR_CODES.includes(error.code as ErrorCode)) {
      throw new Failure("invalid", `'error.code' must be one of ${ERROR_CODES.join(", ")}`);
    }
    const message = typeof error.message === "string" ? error.message : error.code;
    return { kind: "error", code: error.code as ErrorCode, message };
  }
  if (disconnect !== undefined) {
    if (
      !isObject(disconnect) ||
      typeof disconnect.code !== "number" ||
      !Number.isInteger(disconnect.code) ||
      disconnect.code < 4000 ||
      disconnect.code > 4999
    ) {
      throw new Failure("invalid", "'disconnect.code' must be an integer from 4000 to 4999");
    }
    const reason = typeof disconnect.reason === "string" ? disconnect.reason : "disconnected by the application";
    return { kind: "disconnect", code: disconnect.code, reason };
  }
  throw new Failure("invalid", `unknown answer '${keys[0]}'`);
}
