// The room-fan-out shape shared by `chat` and `ticker`: subscribers spread over
// rooms, each room's members split evenly over the instances, and publishers
// that are themselves members of their room (as in a chat), spread over the
// instances too, so publications cross instances through Redis.

import type { ConnSpec, PublisherSpec } from "../generator/spec.js";
import { option, type Plan } from "./scenario.js";

export function roomsPlan(options: Record<string, number>, describe: (members: number) => string): Plan {
  const instances = option(options, "instances");
  const subscribers = option(options, "subscribers");
  const rooms = option(options, "rooms");
  const publishers = option(options, "publishers");
  if (!Number.isInteger(rooms) || rooms < 1) throw new Error("--rooms must be a positive integer");
  if (rooms > subscribers) throw new Error(`--rooms (${rooms}) must not exceed --subscribers (${subscribers})`);
  // Member k of room r is connection r + rooms * k, on instance k % instances.
  const conns: ConnSpec[] = [];
  for (let i = 0; i < subscribers; i++) {
    const slot = Math.floor(i / rooms);
    conns.push({ instance: slot % instances, rooms: [`room-${i % rooms}`] });
  }
  const membersOf = (room: number): number => Math.floor(subscribers / rooms) + (room < subscribers % rooms ? 1 : 0);
  const specs: PublisherSpec[] = [];
  for (let p = 0; p < publishers; p++) {
    const room = p % rooms;
    // Publisher p is member slot q * instances + (p % instances) of its room: distinct, and on instance p % instances.
    const slot = Math.floor(p / rooms) * instances + (p % instances);
    if (slot >= membersOf(room)) {
      throw new Error(`too many publishers (${publishers}) for ${rooms} rooms of about ${subscribers / rooms} members`);
    }
    specs.push({ conn: room + rooms * slot, kind: "room", targets: [`room-${room}`], fanout: membersOf(room) });
  }
  return {
    summary: describe(Math.round(subscribers / rooms)),
    instances,
    conns,
    publishers: specs,
    rate: option(options, "rate"),
    payloadBytes: option(options, "payload"),
    needsTokens: false,
  };
}
