// Room names and namespaces (docs/protocol.md "Rooms, namespaces, users").

export const MAX_ROOM_LENGTH = 200;
const ROOM_PATTERN = /^[A-Za-z0-9_\-:.@/=]{1,200}$/;

export function isValidRoom(room: unknown): room is string {
  return typeof room === "string" && ROOM_PATTERN.test(room);
}

/** The namespace of a room: the part before the first `:`, or "" (the default namespace) when there is none. */
export function namespaceOf(room: string): string {
  const colon = room.indexOf(":");
  return colon === -1 ? "" : room.slice(0, colon);
}
