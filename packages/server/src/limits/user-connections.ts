// Connections per user, counted across the cluster (limits.maxConnectionsPerUser):
// one user's token, leaked or shared, cannot hold more than N connections
// wherever they land. Memory for a single instance, Redis for a cluster
// (user-connections-redis.ts); both pass user-connections.contract.test.ts.

export interface UserConnections {
  /** Resolves once the store answers. */
  start(): Promise<void>;
  /**
   * Counts one more connection of `user` on this instance; false (and not
   * counted) when the user already has `max` cluster-wide. Rejects with
   * ProtocolError("unavailable") when the count cannot be read.
   */
  acquire(user: string, max: number): Promise<boolean>;
  /** One connection of `user` on this instance has closed. */
  release(user: string): void;
  /** Writes this instance's counts again (it dropped out of the cluster, and others may have pruned them). */
  rewrite(): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
}

/** This instance's own counts: all a single instance needs, and what a Redis store rewrites from. */
export class LocalCounts {
  private readonly counts = new Map<string, number>();

  get(user: string): number {
    return this.counts.get(user) ?? 0;
  }

  add(user: string, delta: number): number {
    const count = Math.max(0, this.get(user) + delta);
    if (count === 0) this.counts.delete(user);
    else this.counts.set(user, count);
    return count;
  }

  entries(): IterableIterator<[string, number]> {
    return this.counts.entries();
  }
}

export class MemoryUserConnections implements UserConnections {
  private readonly counts = new LocalCounts();

  async start(): Promise<void> {}

  async acquire(user: string, max: number): Promise<boolean> {
    if (this.counts.get(user) >= max) return false;
    this.counts.add(user, 1);
    return true;
  }

  release(user: string): void {
    this.counts.add(user, -1);
  }

  async rewrite(): Promise<void> {}

  async close(): Promise<void> {}
}
