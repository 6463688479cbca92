// Which new connections an instance takes, decided from the address alone
// before any WebSocket exists, so a refused attempt costs one short HTTP
// answer: the caps on open connections (per instance, per address) and on new
// connections per second (per address, per instance). Per-address checks come
// first, so one noisy address spends only its own allowance of the instance's.

import type { Socket } from "node:net";
import { RateWindow } from "./rate-window.js";
import type { RefusalReason, Refusals } from "./refusals.js";

export interface AdmissionLimits {
  maxConnections: number;
  maxConnectionsPerIp: number;
  connectionsPerSecond: number;
  connectionsPerSecondPerIp: number;
}

/** Why an upgrade is refused, as the HTTP answer says it. */
export interface Refusal {
  reason: RefusalReason;
  status: 429 | 503;
  message: string;
  /** Seconds for a Retry-After header. */
  retryAfter: number;
}

export class ConnectionAdmission {
  private readonly limits: AdmissionLimits;
  private readonly refusals: Refusals;
  private readonly perAddress = new Map<string, number>();
  private readonly perAddressRate: RateWindow;
  private readonly instanceRate: RateWindow;
  private open = 0;

  constructor(limits: AdmissionLimits, refusals: Refusals, now?: () => number) {
    this.limits = limits;
    this.refusals = refusals;
    this.perAddressRate = new RateWindow(limits.connectionsPerSecondPerIp, { now });
    this.instanceRate = new RateWindow(limits.connectionsPerSecond, { now });
  }

  /** Decides on a new connection from `address`; when admitted, the caller must hold() its socket. */
  admit(address: string): Refusal | undefined {
    const refusal = this.check(address);
    if (refusal !== undefined)
      this.refusals.record(refusal.reason, { address }, `connection refused: ${refusal.message}`);
    return refusal;
  }

  private check(address: string): Refusal | undefined {
    const limits = this.limits;
    if (this.open >= limits.maxConnections) {
      return {
        reason: "max_connections",
        status: 503,
        message: `this instance is at its connection limit (limits.maxConnections = ${limits.maxConnections})`,
        retryAfter: 5,
      };
    }
    if ((this.perAddress.get(address) ?? 0) >= limits.maxConnectionsPerIp) {
      return {
        reason: "max_connections_per_ip",
        status: 429,
        message: `too many connections from this address (limits.maxConnectionsPerIp = ${limits.maxConnectionsPerIp})`,
        retryAfter: 5,
      };
    }
    if (!this.perAddressRate.take(address)) {
      return {
        reason: "connections_per_second_per_ip",
        status: 429,
        message: `too many new connections from this address (limits.connectionsPerSecondPerIp = ${limits.connectionsPerSecondPerIp})`,
        retryAfter: 1,
      };
    }
    if (!this.instanceRate.take("")) {
      return {
        reason: "connections_per_second",
        status: 503,
        message: `too many new connections on this instance (limits.connectionsPerSecond = ${limits.connectionsPerSecond})`,
        retryAfter: 1,
      };
    }
    return undefined;
  }

  /**
   * Counts `socket` against its address and the instance until it closes. A
   * method of its own so that the listener's closure holds the address only:
   * one made where the upgrade is handled would keep the request alive.
   */
  hold(address: string, socket: Socket): void {
    this.open++;
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    socket.once("close", () => {
      this.open--;
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(address);
      else this.perAddress.set(address, left);
    });
  }

  /** Number of addresses with open connections (for tests of the per-address index). */
  addressCount(): number {
    return this.perAddress.size;
  }

  /** Sockets held open. */
  openCount(): number {
    return this.open;
  }
}
