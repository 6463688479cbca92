// The sessions open on this instance, and how the closed ones ended (by close
// code, for crier_connections_closed_total).

import { CloseCode } from "crier-protocol";
import type { SessionView } from "./host.js";

export class OpenSessions implements Iterable<SessionView> {
  private readonly open = new Set<SessionView>();
  /** Closed sessions so far, by close code. */
  readonly closeCodes = new Map<number, number>();

  add(session: SessionView): void {
    this.open.add(session);
  }

  /** Forgets a closed `session` and counts its close code (1006 when it has none); returns that code. */
  closed(session: SessionView): number {
    this.open.delete(session);
    const code = session.closeCode ?? CloseCode.Abnormal;
    this.closeCodes.set(code, (this.closeCodes.get(code) ?? 0) + 1);
    return code;
  }

  get size(): number {
    return this.open.size;
  }

  /** A snapshot: closing a session while iterating is safe. */
  [Symbol.iterator](): Iterator<SessionView> {
    return [...this.open][Symbol.iterator]();
  }
}
