// The bench payload: a JSON string whose bytes carry the measurement window's
// tag and the send time, so a receiver finds them by scanning for a marker byte
// instead of parsing JSON or allocating per message.
//
//   "~<tag><send time, 16 decimal digits of µs since the epoch>~xxxx…"

/** "~": never in room names, user ids, ops or event names, so the first one in a frame starts the payload. */
export const MARKER = 0x7e;
const TIME_DIGITS = 16;
const ZERO = 0x30;

/**
 * Microseconds since the epoch with sub-millisecond resolution. timeOrigin +
 * now() is wall-clock based, so worker threads stamp and read the same clock.
 */
export function nowMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** Builds payloads of a fixed size in bytes of JSON text (quotes included). */
export class PayloadBuilder {
  private readonly padding: string;

  constructor(bytes: number) {
    // 2 quotes + marker + tag + time + marker.
    this.padding = "x".repeat(Math.max(0, bytes - 4 - TIME_DIGITS));
  }

  /** The payload as JSON text, for window `tag` (one ASCII character) sent at `sentAt` µs. */
  json(tag: string, sentAt: number): string {
    return `"~${tag}${String(sentAt).padStart(TIME_DIGITS, "0")}~${this.padding}"`;
  }
}

/** Index of the payload marker in buf[start, end), or -1 when the frame carries no bench payload. */
export function findMarker(buf: Buffer, start: number, end: number): number {
  // A plain loop: the marker sits a few dozen bytes in, cheaper to reach than a native indexOf call.
  for (let i = start; i < end; i++) if (buf[i] === MARKER) return i;
  return -1;
}

/** Whether a whole payload header (marker, tag, time) fits in buf[marker, end). */
export function hasPayloadHeader(marker: number, end: number): boolean {
  return marker + 2 + TIME_DIGITS <= end;
}

/** The tag byte after the marker at `marker`. */
export function readTag(buf: Buffer, marker: number): number {
  return buf[marker + 1] ?? 0;
}

/** The send time (µs) after the marker at `marker` and its tag. */
export function readSentAt(buf: Buffer, marker: number): number {
  let value = 0;
  const end = marker + 2 + TIME_DIGITS;
  for (let i = marker + 2; i < end; i++) value = value * 10 + ((buf[i] ?? ZERO) - ZERO);
  return value;
}
