// Coalesces writes to a socket, so that a connection receiving many frames
// pays for few syscalls, without delaying a connection that receives few:
//
// - the first frame to a socket goes out at once, as with no batching;
// - a second frame in the same tick corks the socket until the next tick, so a
//   burst (a fan-out of several publications) leaves in one writev;
// - a frame that comes less than `windowMs` after the socket's last write corks
//   it until the window ends: a socket fed hundreds of frames per second gets
//   them a few per syscall, at most `windowMs` late. A socket fed more slowly
//   never waits. Each frame is still its own WebSocket frame.

import type { Socket } from "node:net";

/** A socket's batching state, owned by its session. */
export class SocketWriter {
  readonly socket: Socket;
  /** performance.now() of the last flush to this socket. */
  lastWrite = Number.NEGATIVE_INFINITY;
  /** The batcher tick of the last immediate write. */
  tick = -1;
  corked = false;

  constructor(socket: Socket) {
    this.socket = socket;
  }
}

export class WriteBatcher {
  private readonly windowMs: number;
  private tick = 0;
  private tickScheduled = false;
  private tickCorked: SocketWriter[] = [];
  private windowCorked: SocketWriter[] = [];
  private windowTimer: NodeJS.Timeout | undefined;

  private readonly endTick = (): void => {
    this.tick++;
    this.tickScheduled = false;
    const corked = this.tickCorked;
    this.tickCorked = [];
    this.uncork(corked);
  };

  private readonly endWindow = (): void => {
    this.windowTimer = undefined;
    const corked = this.windowCorked;
    this.windowCorked = [];
    this.uncork(corked);
  };

  /** `windowMs` 0 turns time-window coalescing off (same-tick coalescing stays). */
  constructor(windowMs: number) {
    this.windowMs = windowMs;
  }

  /** Call before each write to the writer's socket. */
  hold(writer: SocketWriter): void {
    if (writer.corked) return;
    if (this.windowMs > 0 && performance.now() - writer.lastWrite < this.windowMs) {
      this.cork(writer);
      this.windowCorked.push(writer);
      if (this.windowTimer === undefined) {
        this.windowTimer = setTimeout(this.endWindow, this.windowMs);
        this.windowTimer.unref();
      }
      return;
    }
    if (writer.tick === this.tick) {
      this.cork(writer);
      this.tickCorked.push(writer);
      return;
    }
    writer.tick = this.tick;
    writer.lastWrite = performance.now();
    if (!this.tickScheduled) {
      this.tickScheduled = true;
      process.nextTick(this.endTick);
    }
  }

  /** Sends what `writer` holds now (its queue is getting large: holding it longer only grows memory). */
  flush(writer: SocketWriter): void {
    if (!writer.corked) return;
    writer.corked = false;
    writer.lastWrite = performance.now();
    // It stays in its list; the list's uncork later finds it uncorked and does nothing.
    writer.socket.uncork();
  }

  private cork(writer: SocketWriter): void {
    writer.corked = true;
    writer.socket.cork();
  }

  private uncork(writers: SocketWriter[]): void {
    const now = performance.now();
    for (const writer of writers) {
      if (!writer.corked) continue;
      writer.corked = false;
      writer.lastWrite = now;
      writer.socket.uncork();
    }
  }
}
