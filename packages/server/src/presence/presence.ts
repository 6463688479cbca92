// The presence seam (ARCHITECTURE.md "Seams"): who is in a room, cluster-wide.
// Each instance adds its own subscribers of rooms whose namespace enables
// presence or join/leave events and removes them when they leave. An entry
// belongs to the instance that added it: when that instance drops out of the
// cluster (it crashed and stopped heartbeating), its entries stop being listed
// at once, and one surviving instance sweeps them out, announcing their leaves
// (docs/protocol.md "An instance crashes"), so no instance has to refresh
// entries one by one to keep them alive.

import type { JsonObject, Member } from "crier-protocol";

/** A member as stored: who, and which instance answers for it. */
export interface PresenceEntry {
  user: string;
  client: string;
  info?: JsonObject;
  /** Id of the instance the member is connected to. */
  node: string;
}

/** A room's counts, without listing it. */
export interface PresenceStats {
  /** Entries: connections in the room. */
  clients: number;
  /** Distinct users among them (anonymous connections count as the one user ""). */
  users: number;
}

export interface PresenceStore {
  /** Connects; rejects naming what cannot be reached. */
  start(): Promise<void>;
  /** Whether the store is reachable now. */
  isReady(): boolean;
  /**
   * Adds `entry` to `room`, or replaces the entry of the same client. Rejects
   * with ProtocolError("unavailable") when the store is unreachable.
   */
  add(room: string, entry: PresenceEntry): Promise<void>;
  /** Removes `client` from `room` (nothing happens if it is not there). Rejects like add(). */
  remove(room: string, client: string): Promise<void>;
  /**
   * The members of `room` whose instance is live, ordered by user then client.
   * Entries of instances no longer live are hidden until sweep() removes them.
   * Rejects like add().
   */
  list(room: string): Promise<Member[]>;
  /**
   * The room's counts in O(1). They include the entries of an instance that
   * is gone until they are swept. Rejects like add().
   */
  stats(room: string): Promise<PresenceStats>;
  /**
   * Removes the entries of instances no longer live, in every room, and
   * announces each one's leave where the store announces (Redis); one store
   * in the cluster does it per dead instance. Resolves to how many it removed.
   */
  sweep(): Promise<number>;
  /**
   * Writes again every entry added through this store and not removed since:
   * for when this instance dropped out of the cluster and came back, and
   * others may have swept its entries meanwhile (those are announced as
   * joining again where the store announces). Rejects like add().
   */
  rewrite(): Promise<void>;
  /** Stops; leaves the entries in place (removing them is the caller's job on a clean shutdown). Idempotent. */
  close(): Promise<void>;
}

/** The member as clients see it: the entry without its instance. */
export function memberOf(entry: PresenceEntry): Member {
  const member: Member = { user: entry.user, client: entry.client };
  if (entry.info !== undefined) member.info = entry.info;
  return member;
}

/** The order list() returns: by user, then by client id. */
export function compareMembers(a: Member, b: Member): number {
  if (a.user !== b.user) return a.user < b.user ? -1 : 1;
  return a.client < b.client ? -1 : a.client > b.client ? 1 : 0;
}
