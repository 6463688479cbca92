// How frames travel: the subprotocol the client offers and insists on, and how a
// command becomes a WebSocket frame and a frame becomes a server message. JSON is
// the default; MessagePack (crier.v1.msgpack) comes from `crier-client/msgpack`,
// a separate entry point, so JSON-only apps never load a MessagePack library.

import { type ClientCommand, decodeServerFrame, type ServerFrame, SUBPROTOCOL_JSON } from "crier-protocol";

export interface Codec {
  /** The subprotocol: offered to the server, and the one the server must choose. */
  readonly protocol: string;
  /** Whether frames are binary (a binary codec asks the socket for ArrayBuffers). */
  readonly binary: boolean;
  /** One client command as a frame's payload. Throws for what cannot be encoded (e.g. a BigInt in JSON). */
  encode(command: ClientCommand | { op: "pong" }): string | Uint8Array;
  /**
   * One received frame's payload (a string for text frames, an ArrayBuffer or
   * Uint8Array for binary ones) as a server frame; undefined when unreadable.
   */
  decode(data: unknown): ServerFrame | undefined;
}

/** crier.v1.json: text frames holding JSON objects. */
export const jsonCodec: Codec = {
  protocol: SUBPROTOCOL_JSON,
  binary: false,
  encode: (command) => JSON.stringify(command),
  decode: (data) => (typeof data === "string" ? decodeServerFrame(data) : undefined),
};

/** A binary frame's payload as bytes, whichever form the WebSocket implementation gives it in. */
export function bytesOf(data: unknown): Uint8Array | undefined {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return undefined;
}

/** A short description of an unreadable frame, for errors. */
export function describeFrame(data: unknown): string {
  return typeof data === "string" ? data.slice(0, 100) : `a binary frame (${typeof data})`;
}
