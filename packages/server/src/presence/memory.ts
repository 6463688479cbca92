// Presence kept in this process, for the embedded single-instance setup. It
// follows the same contract as RedisPresence (hiding and sweeping instances
// that are no longer live, rewrite()), with liveness injectable for the
// contract tests; in a cluster of one the only instance is this one, always
// live, so nothing is ever swept and no leave is announced on anyone's behalf.

import { type Member, ProtocolError } from "crier-protocol";
import { compareMembers, memberOf, type PresenceEntry, type PresenceStats, type PresenceStore } from "./presence.js";
import { drop, put, type Rooms } from "./rooms.js";

export interface MemoryPresenceOptions {
  /** Whether the instance `node` is live (default: every instance is). */
  isLive?: (node: string) => boolean;
}

export class MemoryPresence implements PresenceStore {
  private readonly isLive: (node: string) => boolean;
  /** What list() reads: room -> client -> entry. */
  private readonly rooms: Rooms = new Map();
  /** What this store added and did not remove since: what rewrite() writes again. */
  private readonly own: Rooms = new Map();
  private closed = false;

  constructor(options: MemoryPresenceOptions = {}) {
    this.isLive = options.isLive ?? (() => true);
  }

  async start(): Promise<void> {}

  isReady(): boolean {
    return !this.closed;
  }

  async add(room: string, entry: PresenceEntry): Promise<void> {
    this.check();
    put(this.rooms, room, entry);
    put(this.own, room, entry);
  }

  async remove(room: string, client: string): Promise<void> {
    this.check();
    drop(this.rooms, room, client);
    drop(this.own, room, client);
  }

  async list(room: string): Promise<Member[]> {
    this.check();
    const members: Member[] = [];
    for (const entry of this.rooms.get(room)?.values() ?? [])
      if (this.isLive(entry.node)) members.push(memberOf(entry));
    return members.sort(compareMembers);
  }

  async stats(room: string): Promise<PresenceStats> {
    this.check();
    const entries = [...(this.rooms.get(room)?.values() ?? [])];
    return { clients: entries.length, users: new Set(entries.map((entry) => entry.user)).size };
  }

  async sweep(): Promise<number> {
    this.check();
    let removed = 0;
    for (const [room, entries] of [...this.rooms]) {
      for (const entry of [...entries.values()]) {
        if (this.isLive(entry.node)) continue;
        drop(this.rooms, room, entry.client);
        removed += 1;
      }
    }
    return removed;
  }

  async rewrite(): Promise<void> {
    this.check();
    for (const [room, entries] of this.own) for (const entry of entries.values()) put(this.rooms, room, entry);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private check(): void {
    if (this.closed) throw new ProtocolError("unavailable", "the presence store is closed");
  }
}
