// A connection's timers: server pings with a pong deadline (4502), and the
// token's expiry (4005). One timer each, re-armed rather than accumulated.

import { CloseCode } from "crier-protocol";

/** setTimeout's longest delay; longer token lifetimes are re-armed. */
const MAX_TIMER_MS = 2_147_483_647;

export interface KeepaliveTarget {
  sendPing(): void;
  close(code: number, reason: string): void;
  /** The credentials' expiry has come: renew them (expireAt again) or close with 4005. */
  expired(): void;
}

export class Keepalive {
  private readonly target: KeepaliveTarget;
  private readonly pingIntervalMs: number;
  private readonly pongTimeoutMs: number;
  private pingTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private awaitingPong = false;

  constructor(target: KeepaliveTarget, pingIntervalMs: number, pongTimeoutMs: number) {
    this.target = target;
    this.pingIntervalMs = pingIntervalMs;
    this.pongTimeoutMs = pongTimeoutMs;
  }

  /** Starts (or, after a pong, restarts) the ping cycle. */
  schedulePing(): void {
    clearTimeout(this.pingTimer);
    this.pingTimer = setTimeout(() => {
      if (this.awaitingPong) {
        this.target.close(CloseCode.NoPong, "no pong within the pong timeout");
        return;
      }
      this.awaitingPong = true;
      this.target.sendPing();
      this.pingTimer = setTimeout(() => {
        if (this.awaitingPong) this.target.close(CloseCode.NoPong, "no pong within the pong timeout");
      }, this.pongTimeoutMs);
    }, this.pingIntervalMs);
  }

  pong(): void {
    this.awaitingPong = false;
    this.schedulePing();
  }

  /** Tells the target at `expiresAt` (ms since epoch) that the credentials expired; undefined: never. */
  expireAt(expiresAt: number | undefined): void {
    clearTimeout(this.expiryTimer);
    if (expiresAt === undefined) return;
    const delay = expiresAt - Date.now();
    if (delay <= 0) {
      this.target.expired();
      return;
    }
    this.expiryTimer = setTimeout(() => this.expireAt(expiresAt), Math.min(delay, MAX_TIMER_MS));
  }

  stop(): void {
    clearTimeout(this.pingTimer);
    clearTimeout(this.expiryTimer);
  }
}
