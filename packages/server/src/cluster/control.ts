// Request and reply between instances over the backplane. Every instance
// listens on a channel of its own (ChannelNames.node); ask() publishes a
// request there and waits, up to a timeout, for the reply that comes back on
// the asker's own channel with the same correlation id. askAll() asks a list of
// instances at once and says which answered. Methods are typed by a map of
// method name to request and reply types, so each feature (the console's
// cluster views today) declares what it asks and answers.

import { randomUUID } from "node:crypto";
import { ERROR_CODES, type ErrorCode, ProtocolError } from "crier-protocol";
import type { Logger } from "pino";
import type { Broker, ChannelNames } from "../broker/broker.js";
import type { Envelope } from "../broker/envelope.js";
import { parseJsonObject } from "../json-object.js";

/** Method name -> what a request carries and what its reply carries (both JSON-serializable). */
export type ControlMethods = Record<string, { request: unknown; reply: unknown }>;

export type ControlHandler<M extends ControlMethods, K extends keyof M> = (
  request: M[K]["request"],
  from: string,
) => M[K]["reply"] | Promise<M[K]["reply"]>;

/** One instance's answer in askAll(): its reply, or why there is none. */
export type ControlAnswer<T> =
  | { node: string; reply: T }
  | { node: string; error: { code: ErrorCode; message: string } };

export interface ControlOptions {
  nodeId: string;
  broker: Broker;
  names: ChannelNames;
  /** How long ask() waits for a reply by default. */
  timeoutMs: number;
  logger: Logger;
}

interface Pending {
  resolve(reply: unknown): void;
  reject(error: ProtocolError): void;
  timer: NodeJS.Timeout;
}

const KNOWN_CODES: ReadonlySet<string> = new Set<string>(ERROR_CODES);

export class Control<M extends ControlMethods> {
  private readonly options: ControlOptions;
  private readonly handlers = new Map<string, (request: unknown, from: string) => unknown>();
  private readonly pending = new Map<string, Pending>();
  private closed = false;

  constructor(options: ControlOptions) {
    this.options = options;
  }

  /** Subscribes this instance's own channel; requests and replies flow once it resolves. */
  start(): Promise<void> {
    return this.options.broker.subscribe(this.options.names.node(this.options.nodeId));
  }

  handle<K extends keyof M & string>(method: K, handler: ControlHandler<M, K>): void {
    this.handlers.set(method, handler as (request: unknown, from: string) => unknown);
  }

  /**
   * Asks one instance. Rejects with `unavailable` when it does not answer in
   * time, or with the error its handler threw. This instance answers itself
   * without a backplane round trip.
   */
  async ask<K extends keyof M & string>(
    node: string,
    method: K,
    request: M[K]["request"],
    timeoutMs = this.options.timeoutMs,
  ): Promise<M[K]["reply"]> {
    if (this.closed) throw new ProtocolError("unavailable", "this instance is shutting down");
    if (node === this.options.nodeId) return (await this.run(method, request, node)) as M[K]["reply"];
    const id = randomUUID();
    const reply = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ProtocolError("unavailable", `instance ${node} did not answer '${method}' within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.pending.set(id, { resolve, reject, timer });
    });
    const envelope: Envelope = {
      kind: "request",
      node: this.options.nodeId,
      data: JSON.stringify({ i: id, m: method, b: request }),
    };
    try {
      await this.options.broker.publish(this.options.names.node(node), envelope);
    } catch (error) {
      this.settle(id)?.reject(
        error instanceof ProtocolError ? error : new ProtocolError("unavailable", "backplane unavailable"),
      );
    }
    // Replies come from instances of the same cluster, which run the same methods.
    return (await reply) as M[K]["reply"];
  }

  /** Asks every instance in `nodes` at once; one answer per instance, in the order given. */
  askAll<K extends keyof M & string>(
    nodes: readonly string[],
    method: K,
    request: M[K]["request"],
    timeoutMs = this.options.timeoutMs,
  ): Promise<ControlAnswer<M[K]["reply"]>[]> {
    return Promise.all(
      nodes.map((node) =>
        this.ask(node, method, request, timeoutMs).then(
          (reply): ControlAnswer<M[K]["reply"]> => ({ node, reply }),
          (error: unknown): ControlAnswer<M[K]["reply"]> => ({ node, error: describe(error) }),
        ),
      ),
    );
  }

  /** An envelope that came in on this instance's channel. */
  receive(envelope: Envelope): void {
    const message = parseJsonObject(envelope.data);
    if (message === undefined || typeof message.i !== "string") {
      this.options.logger.warn({ from: envelope.node }, "ignored a malformed control message");
      return;
    }
    const id = message.i;
    if (envelope.kind === "reply") {
      const pending = this.settle(id);
      if (pending === undefined) return; // timed out already
      const error = message.e;
      if (typeof error === "object" && error !== null) {
        const { code, message: text } = error as Record<string, unknown>;
        pending.reject(
          new ProtocolError(
            typeof code === "string" && KNOWN_CODES.has(code) ? (code as ErrorCode) : "internal",
            typeof text === "string" ? text : "control request failed",
          ),
        );
      } else {
        pending.resolve(message.b);
      }
      return;
    }
    if (envelope.kind !== "request" || typeof message.m !== "string") return;
    const from = envelope.node;
    this.run(message.m, message.b, from).then(
      (body) => this.answer(from, { i: id, b: body }),
      (error: unknown) => {
        if (!(error instanceof ProtocolError)) {
          this.options.logger.error({ err: error, method: message.m, from }, "control request failed");
        }
        this.answer(from, { i: id, e: describe(error) });
      },
    );
  }

  /** Rejects every request still waiting. Idempotent. */
  close(): void {
    this.closed = true;
    for (const id of [...this.pending.keys()]) {
      this.settle(id)?.reject(new ProtocolError("unavailable", "this instance is shutting down"));
    }
  }

  private async run(method: string, request: unknown, from: string): Promise<unknown> {
    const handler = this.handlers.get(method);
    if (handler === undefined) throw new ProtocolError("bad_request", `no control method '${method}' on this instance`);
    return handler(request, from);
  }

  private answer(node: string, message: Record<string, unknown>): void {
    const envelope: Envelope = { kind: "reply", node: this.options.nodeId, data: JSON.stringify(message) };
    this.options.broker.publish(this.options.names.node(node), envelope).catch((error: unknown) => {
      this.options.logger.warn({ err: error, to: node }, "could not send a control reply");
    });
  }

  private settle(id: string): Pending | undefined {
    const pending = this.pending.get(id);
    if (pending === undefined) return undefined;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    return pending;
  }
}

function describe(error: unknown): { code: ErrorCode; message: string } {
  if (error instanceof ProtocolError) return { code: error.code, message: error.message };
  return { code: "internal", message: "internal error" };
}
