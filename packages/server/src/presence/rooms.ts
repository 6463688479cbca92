// Presence entries this instance keeps, by room then client, shared by the
// memory and Redis stores, and sets of clients by room (removals still to be
// made): empty rooms are removed so neither grows with rooms nobody is in any more.

import type { PresenceEntry } from "./presence.js";

export type Rooms = Map<string, Map<string, PresenceEntry>>;

export function put(rooms: Rooms, room: string, entry: PresenceEntry): void {
  let entries = rooms.get(room);
  if (entries === undefined) {
    entries = new Map();
    rooms.set(room, entries);
  }
  entries.set(entry.client, entry);
}

export function drop(rooms: Rooms, room: string, client: string): void {
  const entries = rooms.get(room);
  if (entries === undefined) return;
  entries.delete(client);
  if (entries.size === 0) rooms.delete(room);
}

export function remember(sets: Map<string, Set<string>>, room: string, client: string): void {
  let clients = sets.get(room);
  if (clients === undefined) {
    clients = new Set();
    sets.set(room, clients);
  }
  clients.add(client);
}

export function forget(sets: Map<string, Set<string>>, room: string, client: string): void {
  const clients = sets.get(room);
  if (clients === undefined) return;
  clients.delete(client);
  if (clients.size === 0) sets.delete(room);
}
