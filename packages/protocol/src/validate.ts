// Validation of client frames at the edge: `unknown` in, a typed command or a
// protocol verdict out. Inside the server the types are trusted.

import { ProtocolError } from "./codes.js";
import { isValidRoom } from "./room.js";
import type { ClientCommand, JsonObject, JsonValue, StreamPosition } from "./types.js";

export type DecodedFrame =
  /** The frame is not a JSON object: the connection must be closed with 4002. */
  | { kind: "fatal"; reason: string }
  /** A JSON object with a bad field: answer `error` `bad_request`, with the frame's id if it had a valid one. */
  | { kind: "invalid"; id?: number; op?: string; error: ProtocolError }
  | { kind: "command"; command: ClientCommand };

const MAX_NAME_LENGTH = 200;
const MAX_TOKEN_LENGTH = 16_384;
/** Server-side subscriptions a `connect` may ask to resume: far more than a connection is given. */
const MAX_RESUMED_SUBS = 1000;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

function bad(message: string): ProtocolError {
  return new ProtocolError("bad_request", message);
}

function room(frame: Record<string, unknown>): string {
  const value = frame.room;
  if (!isValidRoom(value)) {
    throw bad(
      value === undefined
        ? "field 'room' is required"
        : "field 'room' must be 1-200 characters of A-Z a-z 0-9 _ - : . @ / =",
    );
  }
  return value;
}

function data(frame: Record<string, unknown>): JsonValue {
  if (!("data" in frame) || frame.data === undefined) throw bad("field 'data' is required");
  return frame.data as JsonValue;
}

const POSITION_SHAPE = '{"offset": non-negative integer, "epoch": string}';

function position(value: unknown): StreamPosition | undefined {
  if (!isObject(value) || !isNonNegativeInteger(value.offset) || typeof value.epoch !== "string") return undefined;
  return { offset: value.offset, epoch: value.epoch };
}

function since(frame: Record<string, unknown>): StreamPosition | undefined {
  const value = frame.since;
  if (value === undefined || value === null) return undefined;
  const parsed = position(value);
  if (parsed === undefined) throw bad(`field 'since' must be ${POSITION_SHAPE}`);
  return parsed;
}

/** `connect`'s `subs`: room -> position, at most MAX_RESUMED_SUBS of them. */
function resumedSubs(frame: Record<string, unknown>): Record<string, StreamPosition> | undefined {
  const value = frame.subs;
  if (value === undefined || value === null) return undefined;
  const shape = `field 'subs' must be an object of at most ${MAX_RESUMED_SUBS} room names, each to ${POSITION_SHAPE}`;
  if (!isObject(value)) throw bad(shape);
  const entries = Object.entries(value);
  if (entries.length > MAX_RESUMED_SUBS) throw bad(shape);
  // A prototype-free object: a room named "__proto__" is just a key.
  const out: Record<string, StreamPosition> = Object.create(null);
  for (const [name, raw] of entries) {
    const parsed = position(raw);
    if (!isValidRoom(name) || parsed === undefined) throw bad(shape);
    out[name] = parsed;
  }
  return out;
}

function optionalString(frame: Record<string, unknown>, key: string, max: number): string | undefined {
  const value = frame[key];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value.length > max) {
    throw bad(`field '${key}' must be a string of at most ${max} characters`);
  }
  return value;
}

function requiredString(frame: Record<string, unknown>, key: string, max: number): string {
  const value = optionalString(frame, key, max);
  if (value === undefined) throw bad(`field '${key}' is required`);
  return value;
}

function command(op: unknown, frame: Record<string, unknown>): ClientCommand {
  switch (op) {
    case "connect": {
      const info = frame.info;
      if (info !== undefined && !isObject(info)) throw bad("field 'info' must be a JSON object");
      return {
        op,
        token: optionalString(frame, "token", MAX_TOKEN_LENGTH),
        info: info as JsonObject | undefined,
        name: optionalString(frame, "name", MAX_NAME_LENGTH),
        subs: resumedSubs(frame),
      };
    }
    case "subscribe":
      return { op, room: room(frame), since: since(frame) };
    case "unsubscribe":
    case "presence":
    case "presence_stats":
      return { op, room: room(frame) };
    case "publish":
      return { op, room: room(frame), data: data(frame) };
    case "send": {
      const user = requiredString(frame, "user", MAX_NAME_LENGTH);
      if (user === "") throw bad("field 'user' must not be empty: anonymous connections cannot be addressed");
      return { op, user, data: data(frame) };
    }
    case "history": {
      const limit = frame.limit;
      if (limit !== undefined && !isPositiveInteger(limit)) throw bad("field 'limit' must be a positive integer");
      return { op, room: room(frame), since: since(frame), limit };
    }
    case "refresh":
      return { op, token: requiredString(frame, "token", MAX_TOKEN_LENGTH) };
    case "pong":
      return { op };
    case "rpc": {
      const method = requiredString(frame, "method", MAX_NAME_LENGTH);
      if (method === "") throw bad("field 'method' must not be empty");
      return { op, method, data: "data" in frame && frame.data !== undefined ? (frame.data as JsonValue) : null };
    }
    default:
      throw bad(
        typeof op === "string" ? `unknown op '${op.slice(0, 40)}'` : "field 'op' is required and must be a string",
      );
  }
}

/** Validates an already-parsed frame (JSON or MessagePack). */
export function validateClientFrame(frame: unknown): DecodedFrame {
  if (!isObject(frame)) return { kind: "fatal", reason: "frame is not a JSON object" };
  const rawId = frame.id;
  const id = isPositiveInteger(rawId) ? rawId : undefined;
  if (rawId !== undefined && id === undefined) {
    return { kind: "invalid", error: bad("field 'id' must be a positive integer") };
  }
  try {
    const cmd = command(frame.op, frame);
    if (id !== undefined) cmd.id = id;
    return { kind: "command", command: cmd };
  } catch (error) {
    if (error instanceof ProtocolError) {
      const op = typeof frame.op === "string" ? frame.op : undefined;
      return { kind: "invalid", id, op, error };
    }
    throw error;
  }
}

/** Parses and validates one text frame of the JSON subprotocol. */
export function decodeClientFrame(text: string): DecodedFrame {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { kind: "fatal", reason: "frame is not valid JSON" };
  }
  return validateClientFrame(parsed);
}
