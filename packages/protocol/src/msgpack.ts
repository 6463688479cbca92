// The MessagePack codec of the `crier.v1.msgpack` subprotocol: the same frames
// as JSON, as MessagePack maps in binary WebSocket frames. A separate entry
// point (crier-protocol/msgpack) so JSON-only users, like the SDK, never load it.

import { Packr } from "msgpackr";
import type { ClientCommand, ServerFrame } from "./types.js";
import { type DecodedFrame, validateClientFrame } from "./validate.js";

// Plain maps, no msgpackr record extension: any MessagePack library can read them.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" });

export function encodeServerFrameMsgpack(frame: ServerFrame | Record<string, unknown>): Buffer {
  return packr.pack(frame);
}

/**
 * Encodes a client command (used by clients and tests). Fields that are undefined are
 * left out, as JSON.stringify does, rather than sent as msgpackr's extension for
 * undefined, which other MessagePack libraries do not know.
 */
export function encodeClientFrameMsgpack(command: ClientCommand | Record<string, unknown>): Uint8Array {
  return packr.pack(Object.fromEntries(Object.entries(command).filter(([, value]) => value !== undefined)));
}

/** Decodes and validates one binary frame; anything that is not a MessagePack map is fatal (4002). */
export function decodeClientFrameMsgpack(data: Uint8Array): DecodedFrame {
  let parsed: unknown;
  try {
    parsed = packr.unpack(data);
  } catch {
    return { kind: "fatal", reason: "frame is not valid MessagePack" };
  }
  // Only a plain map is a frame (msgpackr turns some invalid bytes into other objects).
  if (typeof parsed !== "object" || parsed === null || Object.getPrototypeOf(parsed) !== Object.prototype) {
    return { kind: "fatal", reason: "frame is not a MessagePack map" };
  }
  return validateClientFrame(parsed);
}

/** Decodes a server frame (used by clients and tests). */
export function decodeServerFrameMsgpack(data: Uint8Array): ServerFrame | undefined {
  try {
    const parsed: unknown = packr.unpack(data);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;
    return typeof (parsed as { op?: unknown }).op === "string" ? (parsed as ServerFrame) : undefined;
  } catch {
    return undefined;
  }
}
