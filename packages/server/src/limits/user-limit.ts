// limits.maxConnectionsPerUser for the sessions of this instance: counts a
// session's user in the cluster-wide UserConnections from its connect until
// it closes, and refuses the connect over the limit.

import { ProtocolError } from "crier-protocol";
import type { Refusals } from "./refusals.js";
import type { UserConnections } from "./user-connections.js";

export class UserConnectionLimit<S extends object> {
  private readonly store: UserConnections;
  private readonly max: number;
  private readonly refusals: Refusals;
  /** Sessions counted, with the user they count for. */
  private readonly admitted = new Map<S, string>();
  /** Sessions that closed before their count came back (so the count is given back when it does). */
  private readonly closedEarly = new WeakSet<S>();

  constructor(store: UserConnections, max: number, refusals: Refusals) {
    this.store = store;
    this.max = max;
    this.refusals = refusals;
  }

  /**
   * Counts `session` for `user` ("" is not counted) until release(). Throws
   * ProtocolError("rate_limited") over the limit, ("unavailable") when the
   * count cannot be read.
   */
  async admit(session: S, user: string): Promise<void> {
    if (user === "") return;
    if (!(await this.store.acquire(user, this.max))) {
      this.refusals.record("max_connections_per_user", { user }, "connection refused: per-user limit reached");
      throw new ProtocolError(
        "rate_limited",
        `user ${user} already has ${this.max} connections (limits.maxConnectionsPerUser): close one, or try again later`,
      );
    }
    if (this.closedEarly.has(session)) this.store.release(user);
    else this.admitted.set(session, user);
  }

  /** `session` has closed: its count, if any, goes. */
  release(session: S): void {
    const user = this.admitted.get(session);
    if (user === undefined) {
      this.closedEarly.add(session);
      return;
    }
    this.admitted.delete(session);
    this.store.release(user);
  }
}
