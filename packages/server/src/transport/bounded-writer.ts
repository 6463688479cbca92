// The bounded outbound side of a connection, the same for both transports: a
// shared frame is written only while the queue stays within its bound (else
// the session closes a slow consumer), or, paced, once the socket has drained;
// every write is coalesced per tick by the WriteBatcher.

import type { Socket } from "node:net";
import { type Corkable, SocketWriter, type WriteBatcher } from "../session/write-batcher.js";

export interface BoundedOutput extends Corkable {
  /** Bytes queued and not yet handed to the kernel (frames held for coalescing included). */
  queued(): number;
  /** The socket whose 'drain' says the queue shrank; null once it is gone. */
  socket(): Socket | null;
  isOpen(): boolean;
  write(bytes: Buffer): void;
}

export class BoundedWriter {
  private readonly output: BoundedOutput;
  private readonly writer: SocketWriter;
  private readonly batcher: WriteBatcher;
  private readonly limit: number;

  constructor(output: BoundedOutput, batcher: WriteBatcher, limit: number) {
    this.output = output;
    this.writer = new SocketWriter(output);
    this.batcher = batcher;
    this.limit = limit;
  }

  /** Writes `bytes` unless they would take the queue past its bound: false then, and nothing written. */
  send(bytes: Buffer): boolean {
    if (!this.output.isOpen()) return true;
    if (!this.fits(bytes)) {
      // Frames held for coalescing count too: hand them to the kernel first.
      this.flush();
      if (!this.fits(bytes)) return false;
    }
    this.write(bytes);
    return true;
  }

  /** Writes `bytes`, first waiting while the queue is past its bound; false once closed. */
  async sendPaced(bytes: Buffer): Promise<boolean> {
    while (this.output.isOpen() && this.output.queued() > 0 && !this.fits(bytes)) {
      // Held frames would never drain while corked: send them now.
      this.flush();
      if (this.fits(bytes)) break;
      const socket = this.output.socket();
      if (socket === null) break;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          socket.off("drain", done);
          socket.off("close", done);
          resolve();
        };
        socket.once("drain", done);
        socket.once("close", done);
      });
    }
    if (!this.output.isOpen()) return false;
    this.write(bytes);
    return true;
  }

  /** Writes `bytes` whatever the queue holds (replies, pings, the close). */
  write(bytes: Buffer): void {
    this.batcher.hold(this.writer);
    this.output.write(bytes);
  }

  /** Sends what the batcher holds now. */
  flush(): void {
    this.batcher.flush(this.writer);
  }

  private fits(bytes: Buffer): boolean {
    return this.output.queued() + bytes.length <= this.limit;
  }
}
