// Coalesces writes: the first frame written to a socket in a tick corks it and
// one nextTick uncorks every corked socket, so all frames for a socket produced
// in one tick (a burst of publications fanned out by the hub) leave in one
// syscall, each still its own WebSocket frame. ws's own cork/uncork around a
// frame's header and payload nests inside ours.

import type { Socket } from "node:net";

export class WriteBatcher {
  private held: Socket[] = [];
  private scheduled = false;
  private readonly flush = (): void => {
    const held = this.held;
    this.held = [];
    this.scheduled = false;
    for (const socket of held) socket.uncork();
  };

  /** Corks `socket` until the end of this tick, once per tick. */
  hold(socket: Socket): void {
    if (socket.writableCorked > 0) return;
    socket.cork();
    this.held.push(socket);
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(this.flush);
    }
  }
}
