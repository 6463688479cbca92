// Test support: an in-memory WebSocket the test drives by hand, for failures a real
// socket will not produce on demand (a write that throws).

import type { CloseEventLike, ErrorEventLike, MessageEventLike, WebSocketLike } from "../socket.js";
import { Inbox } from "./inbox.js";

export class MemorySocket implements WebSocketLike {
  /** Every socket the client creates, in order. */
  static readonly created = new Inbox<MemorySocket>();

  readonly url: string;
  protocol = "crier.v1.json";
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: MessageEventLike) => void) | null = null;
  onclose: ((event: CloseEventLike) => void) | null = null;
  onerror: ((event: ErrorEventLike) => void) | null = null;
  /** Frames the client wrote, parsed. */
  readonly sent: { [key: string]: unknown }[] = [];
  readonly #written = new Inbox<{ [key: string]: unknown }>();
  /** Writes after this many throw, as a socket failing under the client would. */
  failAfterWrites = Number.POSITIVE_INFINITY;

  constructor(url: string) {
    this.url = url;
    queueMicrotask(() => this.onopen?.({}));
    MemorySocket.created.push(this);
  }

  send(data: string): void {
    if (this.sent.length >= this.failAfterWrites) throw new Error("write failed");
    const frame = JSON.parse(data) as { [key: string]: unknown };
    this.sent.push(frame);
    this.#written.push(frame);
  }

  close(): void {}

  /** The next frame the client wrote with this op. */
  next(op: string): Promise<{ [key: string]: unknown }> {
    return this.#written.next((frame) => frame.op === op);
  }

  receive(frame: { [key: string]: unknown }): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  serverClose(code: number, reason = ""): void {
    this.onclose?.({ code, reason });
  }
}
