// Request and reply: every command gets an id and settles with the reply that
// carries it; commands issued while (re)connecting wait in a bounded queue and
// are written, in order, once the next connection is up.

import type { ClientCommand, ServerFrame } from "crier-protocol";
import type { Codec } from "./codec.js";
import type { Connection } from "./connection.js";
import { asError, CrierClientError } from "./errors.js";
import { PendingReplies, type ReplyCallbacks } from "./pending.js";

export type Reply<Op extends ServerFrame["op"]> = Extract<ServerFrame, { op: Op }>;

function isReply<Op extends ServerFrame["op"]>(frame: ServerFrame, op: Op): frame is Reply<Op> {
  return frame.op === op;
}

/** What waits for a reply of op `Op`; a reply of any other op fails it with bad_frame. */
export interface Expecting<Op extends ServerFrame["op"]> {
  reply(frame: Reply<Op>): void;
  fail(error: Error): void;
}

/** What the requests need to know of the client's connection. */
export interface RequestLink {
  /** The connection to write to, while connected. */
  connected(): Connection | undefined;
  /** Whether the client is connecting or connected (else commands fail at once). */
  active(): boolean;
}

export interface RequestOptions {
  codec: Codec;
  ackTimeoutMs: number;
  maxQueuedCommands: number;
}

export class Requests {
  readonly #options: RequestOptions;
  readonly #link: RequestLink;
  readonly #pending: PendingReplies;
  /** Commands issued while (re)connecting, written after the next `connected`. */
  #queue: { id: number; frame: string | Uint8Array }[] = [];

  constructor(options: RequestOptions, link: RequestLink) {
    this.#options = options;
    this.#link = link;
    this.#pending = new PendingReplies(options.ackTimeoutMs);
  }

  /** An id for a command sent outside request() (the `connect` of a new connection). */
  nextId(): number {
    return this.#pending.nextId();
  }

  /** Sends `command` with a fresh id and resolves with its reply, which must have op `expect`. */
  request<Op extends ServerFrame["op"]>(command: ClientCommand, expect: Op): Promise<Reply<Op>> {
    return new Promise((reply, fail) => this.command(command, expect, { reply, fail }, true));
  }

  /**
   * Writes `command` now when connected; while (re)connecting, queues it when `queueable`
   * (bounded by maxQueuedCommands) or fails it; before connect() or after close(), fails it.
   */
  command<Op extends ServerFrame["op"]>(
    command: ClientCommand,
    expect: Op,
    waiter: Expecting<Op>,
    queueable: boolean,
  ): void {
    const callbacks: ReplyCallbacks = {
      reply: (frame) =>
        isReply(frame, expect)
          ? waiter.reply(frame)
          : waiter.fail(new CrierClientError("bad_frame", `'${frame.op}' in reply to '${command.op}'`)),
      fail: waiter.fail,
    };
    const id = this.#pending.nextId();
    let frame: string | Uint8Array;
    try {
      frame = this.#options.codec.encode({ ...command, id });
    } catch (error) {
      callbacks.fail(asError(error));
      return;
    }
    const connection = this.#link.connected();
    if (connection !== undefined) {
      // Registered before writing: if the write fails, the connection reports its close,
      // and that fails this command like every other one in flight.
      this.#pending.add(id, command.op, true, callbacks);
      connection.send(frame);
      return;
    }
    if (!this.#link.active() || !queueable) {
      callbacks.fail(
        new CrierClientError(
          "not_connected",
          `cannot ${command.op}: the client is not connected (call connect() first)`,
        ),
      );
      return;
    }
    this.#queue = this.#queue.filter((queued) => this.#pending.has(queued.id));
    if (this.#queue.length >= this.#options.maxQueuedCommands) {
      callbacks.fail(
        new CrierClientError(
          "queue_full",
          `cannot ${command.op}: reconnecting, and ${this.#options.maxQueuedCommands} commands already wait for the connection`,
        ),
      );
      return;
    }
    this.#pending.add(id, command.op, false, callbacks);
    this.#queue.push({ id, frame });
  }

  /** Writes the queued commands in order. If a write ends the connection, the rest stay queued for the next one. */
  flush(connection: Connection): void {
    while (connection === this.#link.connected()) {
      const queued = this.#queue.shift();
      if (queued === undefined) return;
      // Commands that timed out while queued are dropped, not sent late.
      if (this.#pending.markSent(queued.id)) connection.send(queued.frame);
    }
  }

  /** Settles the command a reply answers; false when nothing waits for that id. */
  settle(id: number, frame: ServerFrame): boolean {
    return this.#pending.settle(id, frame);
  }

  /** The connection dropped (`sentOnly`: commands already written fail; queued ones wait for the next connection), or the client stopped (every command fails and the queue empties). */
  failAll(error: Error, sentOnly = false): void {
    this.#pending.failAll(error, sentOnly);
    if (!sentOnly) this.#queue = [];
  }
}
