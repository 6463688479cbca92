// How the generator speaks to a target: the handshake that makes a connection
// ready (identify, join rooms) and the frames for a publication and a send.
// Each target's dialect sits beside this file.

import type { RawWs } from "./raw-ws.js";
import type { ConnSpec } from "./spec.js";

export interface ConnectionEvents {
  /** A server error that is not a reply to the handshake (rate limit, refused publish, ...). */
  error(message: string): void;
}

export interface Dialect {
  /** Request path of the WebSocket endpoint. */
  readonly path: string;
  /**
   * Installs this dialect's frame handlers on `ws` (pings, replies), opens it
   * and joins `spec.rooms`; resolves when the connection is ready for traffic.
   */
  setup(ws: RawWs, spec: ConnSpec, events: ConnectionEvents): Promise<void>;
  /** A client frame publishing `payloadJson` (JSON text) to `room`, without an ack. */
  publish(room: string, payloadJson: string): Buffer;
  /** A client frame sending `payloadJson` to every connection of `user`, without an ack. */
  send(user: string, payloadJson: string): Buffer;
}

/** Pending replies of one connection, keyed by command id. */
export class Waiters {
  private readonly waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();

  wait(id: number): Promise<void> {
    return new Promise<void>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
  }

  /** Settles the waiter of `id`; false when nobody waited for it. */
  settle(id: number, error?: Error): boolean {
    const waiter = this.waiting.get(id);
    if (waiter === undefined) return false;
    this.waiting.delete(id);
    if (error === undefined) waiter.resolve();
    else waiter.reject(error);
    return true;
  }

  /** Fails every waiter (the connection closed). */
  failAll(error: Error): void {
    for (const waiter of this.waiting.values()) waiter.reject(error);
    this.waiting.clear();
  }
}
