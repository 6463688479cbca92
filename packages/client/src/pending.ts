// Commands waiting for their reply, by id. A command with an id gets exactly one
// reply with it (docs/protocol.md), so each entry settles once: with the reply frame, with
// a ProtocolError from an `error` frame, with a timeout, or when the connection drops.
// Callbacks run synchronously inside the frame handler, so a `subscribed` reply is
// applied before the `message` frames that follow it in the same read.

import { ProtocolError, type ServerFrame } from "crier-protocol";
import { CrierClientError } from "./errors.js";
import { startTimer, type Timer } from "./timer.js";

export interface ReplyCallbacks {
  reply(frame: ServerFrame): void;
  fail(error: Error): void;
}

interface Entry {
  /** False while the command waits in the reconnect queue: a drop does not fail it. */
  sent: boolean;
  callbacks: ReplyCallbacks;
  timer: Timer;
}

export class PendingReplies {
  readonly #timeoutMs: number;
  readonly #entries = new Map<number, Entry>();
  #lastId = 0;

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
  }

  /** A fresh positive id. */
  nextId(): number {
    this.#lastId = this.#lastId >= Number.MAX_SAFE_INTEGER ? 1 : this.#lastId + 1;
    return this.#lastId;
  }

  /**
   * Waits for the reply to command `id`. The timeout runs from now, queued or not, so a
   * command never waits longer than ackTimeoutMs in total.
   */
  add(id: number, op: string, sent: boolean, callbacks: ReplyCallbacks): void {
    const entry: Entry = {
      sent,
      callbacks,
      timer: startTimer(this.#timeoutMs, () => {
        if (this.#entries.get(id) === entry && this.#entries.delete(id))
          callbacks.fail(
            new CrierClientError("timeout", `no reply to '${op}' (id ${id}) within ${this.#timeoutMs} ms`),
          );
      }),
    };
    this.#entries.set(id, entry);
  }

  has(id: number): boolean {
    return this.#entries.has(id);
  }

  /** Marks a queued command as written to the socket; false if it already settled (timed out). */
  markSent(id: number): boolean {
    const entry = this.#entries.get(id);
    if (entry === undefined) return false;
    entry.sent = true;
    return true;
  }

  /** Settles command `id` with its reply; false when no command waits for that id (late or unknown). */
  settle(id: number, frame: ServerFrame): boolean {
    const entry = this.#take(id);
    if (entry === undefined) return false;
    if (frame.op === "error") entry.callbacks.fail(new ProtocolError(frame.code, frame.message));
    else entry.callbacks.reply(frame);
    return true;
  }

  /** Fails every command (`sentOnly`: those written to the dropped socket; queued ones keep waiting for the next one). */
  failAll(error: Error, sentOnly = false): void {
    for (const [id, entry] of [...this.#entries]) {
      if (entry.sent || !sentOnly) this.#take(id)?.callbacks.fail(error);
    }
  }

  #take(id: number): Entry | undefined {
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    this.#entries.delete(id);
    entry.timer.cancel();
    return entry;
  }
}
