// The JSON codec for server frames. `message` and `direct` frames are built from
// the payload's JSON text as it came off the backplane, so forwarding never
// parses a payload; each is encoded once per instance, not once per recipient.

import type { ServerFrame } from "./types.js";

export function encodeServerFrame(frame: ServerFrame): string {
  return JSON.stringify(frame);
}

/** A `message` push around `dataJson`, which must already be valid JSON text. */
export function encodeMessageFrame(room: string, dataJson: string, offset?: number, from?: string): string {
  let out = `{"op":"message","room":${JSON.stringify(room)},"data":${dataJson}`;
  if (offset !== undefined) out += `,"offset":${offset}`;
  if (from !== undefined && from !== "") out += `,"from":${JSON.stringify(from)}`;
  return `${out}}`;
}

/** A `direct` push around `dataJson`, which must already be valid JSON text. */
export function encodeDirectFrame(dataJson: string, from?: string): string {
  let out = `{"op":"direct","data":${dataJson}`;
  if (from !== undefined && from !== "") out += `,"from":${JSON.stringify(from)}`;
  return `${out}}`;
}

/** A `join` or `leave` push around `memberJson`, which must already be valid JSON text. */
export function encodeMemberFrame(op: "join" | "leave", room: string, memberJson: string): string {
  return `{"op":"${op}","room":${JSON.stringify(room)},"member":${memberJson}}`;
}

/** Parses a server frame (used by clients). Returns undefined for anything that is not an object with a string `op`. */
export function decodeServerFrame(text: string): ServerFrame | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;
  if (typeof (parsed as { op?: unknown }).op !== "string") return undefined;
  return parsed as ServerFrame;
}
