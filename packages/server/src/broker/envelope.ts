// The message on the backplane: a small header and the payload exactly as the
// publisher sent it (JSON text). Instances read the header and forward the
// payload without parsing it.
//
// Wire form: one line of header JSON, a newline, then the payload text. A JSON
// text never contains a raw newline outside strings and JSON.stringify escapes
// newlines inside strings, so the first "\n" always ends the header.

export type EnvelopeKind =
  | "message"
  | "direct"
  | "disconnect"
  | "unsubscribe"
  | "join"
  | "leave"
  // Between instances only (cluster/control.ts): data is the request or reply.
  | "request"
  | "reply";

export interface Envelope {
  kind: EnvelopeKind;
  /** The room, for `message`, `unsubscribe`, `join` and `leave`. */
  room?: string;
  /** The target user, for `direct`, `disconnect` and `unsubscribe`. */
  user?: string;
  /** The target client, for `disconnect` of one connection; the member's client, for `join` and `leave`. */
  client?: string;
  /** Publisher's user id, when known. */
  from?: string;
  /** Position in the room's history, for rooms that keep one. */
  offset?: number;
  epoch?: string;
  /** Id of the instance that published. */
  node: string;
  /** Close code and reason, for `disconnect`. */
  code?: number;
  reason?: string;
  /** The payload as JSON text: the member for `join` and `leave`; "" for control envelopes that carry none. */
  data: string;
}

interface Header {
  k: EnvelopeKind;
  n: string;
  r?: string;
  u?: string;
  c?: string;
  f?: string;
  o?: number;
  e?: string;
  x?: number;
  y?: string;
}

const KINDS: ReadonlySet<string> = new Set<EnvelopeKind>([
  "message",
  "direct",
  "disconnect",
  "unsubscribe",
  "join",
  "leave",
  "request",
  "reply",
]);

export function encodeEnvelope(envelope: Envelope): string {
  return `${JSON.stringify(headerOf(envelope))}\n${envelope.data}`;
}

/** An envelope's encoding cut where offset and epoch go (see encodeEnvelopeParts). */
export interface EnvelopeParts {
  head: string;
  tail: string;
}

/**
 * For a store that assigns offset and epoch where the publication is made (the
 * Redis history's Lua script): the envelope's encoding, without offset and
 * epoch, cut where they go, so that
 *   head + ',"o":' + offset + ',"e":"' + epoch + '"' + tail
 * is exactly encodeEnvelope({ ...envelope, offset, epoch }) for an integer
 * offset and an epoch that needs no JSON escaping.
 */
export function encodeEnvelopeParts(envelope: Envelope): EnvelopeParts {
  // Rest keeps insertion order, so `before` is the header up to `f` and `after` what follows `e`.
  const { o: _o, e: _e, x, y, ...before } = headerOf(envelope);
  const after = JSON.stringify({ x, y }); // undefined members are left out, as in encodeEnvelope
  return {
    head: JSON.stringify(before).slice(0, -1),
    tail: `${after === "{}" ? "}" : `,${after.slice(1)}`}\n${envelope.data}`,
  };
}

function headerOf(envelope: Envelope): Header {
  const header: Header = { k: envelope.kind, n: envelope.node };
  if (envelope.room !== undefined) header.r = envelope.room;
  if (envelope.user !== undefined) header.u = envelope.user;
  if (envelope.client !== undefined) header.c = envelope.client;
  if (envelope.from !== undefined) header.f = envelope.from;
  if (envelope.offset !== undefined) header.o = envelope.offset;
  if (envelope.epoch !== undefined) header.e = envelope.epoch;
  if (envelope.code !== undefined) header.x = envelope.code;
  if (envelope.reason !== undefined) header.y = envelope.reason;
  return header;
}

/** Decodes an envelope; throws an Error naming what is wrong when the text is not one. */
export function decodeEnvelope(text: string): Envelope {
  const newline = text.indexOf("\n");
  if (newline === -1) throw new Error("envelope has no header line");
  const header = JSON.parse(text.slice(0, newline)) as Partial<Header>;
  if (typeof header.k !== "string" || !KINDS.has(header.k) || typeof header.n !== "string") {
    throw new Error("envelope header lacks a known kind or a node id");
  }
  const envelope: Envelope = { kind: header.k, node: header.n, data: text.slice(newline + 1) };
  if (typeof header.r === "string") envelope.room = header.r;
  if (typeof header.u === "string") envelope.user = header.u;
  if (typeof header.c === "string") envelope.client = header.c;
  if (typeof header.f === "string") envelope.from = header.f;
  if (typeof header.o === "number") envelope.offset = header.o;
  if (typeof header.e === "string") envelope.epoch = header.e;
  if (typeof header.x === "number") envelope.code = header.x;
  if (typeof header.y === "string") envelope.reason = header.y;
  return envelope;
}
