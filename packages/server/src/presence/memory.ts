// Presence kept in this process, for the embedded single-instance setup. It
// follows the same contract as RedisPresence (pruning of instances that are no
// longer live, rewrite()), with liveness injectable for the contract tests; in
// a cluster of one the only instance is this one, always live.

import { type Member, ProtocolError } from "crier-protocol";
import { compareMembers, memberOf, type PresenceEntry, type PresenceStore } from "./presence.js";
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
    const entries = this.rooms.get(room);
    if (entries === undefined) return [];
    const members: Member[] = [];
    for (const [client, entry] of entries) {
      if (this.isLive(entry.node)) members.push(memberOf(entry));
      else entries.delete(client);
    }
    if (entries.size === 0) this.rooms.delete(room);
    return members.sort(compareMembers);
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
