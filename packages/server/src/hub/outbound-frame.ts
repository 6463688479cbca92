// A publication's frame, shared by all its local recipients and encoded at
// most once per subprotocol, on first use: a room of JSON clients never pays
// for MessagePack, and a hundred recipients cost one encoding, not a hundred.

import { encodeDirectFrame, encodeMemberFrame, encodeMessageFrame } from "crier-protocol";
import { encodeServerFrameMsgpack } from "crier-protocol/msgpack";
import type { Envelope } from "../broker/envelope.js";
import { sseEvent } from "./sse-event.js";
import type { DeflatePeer } from "./ws-deflate.js";
import { OPCODE_BINARY, OPCODE_TEXT, wsFrame } from "./ws-frame.js";

export interface OutboundFrame {
  /** The frame as JSON text, UTF-8. */
  json(): Buffer;
  /** The frame as a MessagePack map. */
  msgpack(): Buffer;
  /** json() as a complete WebSocket text frame, ready to write to any socket. */
  jsonWire(): Buffer;
  /** msgpack() as a complete WebSocket binary frame. */
  msgpackWire(): Buffer;
  /** json() as a complete Server-Sent Events event (`data: <json>` and a blank line), for the HTTP fallback. */
  sseWire(): Buffer;
  /**
   * The WebSocket frame for a socket with permessage-deflate: compressed once
   * per subprotocol and window size, or the plain frame when it stays uncompressed.
   */
  deflatedWire(binary: boolean, peer: DeflatePeer): Buffer;
}

/** Caches the wire frames of a publication; subclasses say how to encode it. */
abstract class SharedFrame implements OutboundFrame {
  private jsonBytes: Buffer | undefined;
  private msgpackBytes: Buffer | undefined;
  private jsonFrame: Buffer | undefined;
  private msgpackFrame: Buffer | undefined;
  private sseFrame: Buffer | undefined;
  /** By window size, negative for MessagePack; usually one entry. */
  private deflatedFrames: Map<number, Buffer> | undefined;

  protected abstract encodeJson(): string;
  protected abstract encodeObject(): Record<string, unknown>;

  json(): Buffer {
    this.jsonBytes ??= Buffer.from(this.encodeJson());
    return this.jsonBytes;
  }

  msgpack(): Buffer {
    this.msgpackBytes ??= encodeServerFrameMsgpack(this.encodeObject());
    return this.msgpackBytes;
  }

  jsonWire(): Buffer {
    this.jsonFrame ??= wsFrame(this.json(), OPCODE_TEXT);
    return this.jsonFrame;
  }

  msgpackWire(): Buffer {
    this.msgpackFrame ??= wsFrame(this.msgpack(), OPCODE_BINARY);
    return this.msgpackFrame;
  }

  sseWire(): Buffer {
    this.sseFrame ??= sseEvent(this.json());
    return this.sseFrame;
  }

  deflatedWire(binary: boolean, peer: DeflatePeer): Buffer {
    const key = binary ? -peer.windowBits : peer.windowBits;
    let frame = this.deflatedFrames?.get(key);
    if (frame === undefined) {
      frame = binary
        ? (peer.deflater.frame(this.msgpack(), OPCODE_BINARY, peer.windowBits) ?? this.msgpackWire())
        : (peer.deflater.frame(this.json(), OPCODE_TEXT, peer.windowBits) ?? this.jsonWire());
      this.deflatedFrames ??= new Map();
      this.deflatedFrames.set(key, frame);
    }
    return frame;
  }
}

/** A `message` push: built around the payload's JSON text, which is never parsed for JSON clients. */
export class MessageFrame extends SharedFrame {
  private readonly room: string;
  private readonly envelope: Envelope;

  constructor(room: string, envelope: Envelope) {
    super();
    this.room = room;
    this.envelope = envelope;
  }

  protected encodeJson(): string {
    return encodeMessageFrame(this.room, this.envelope.data, this.envelope.offset, this.envelope.from);
  }

  protected encodeObject(): Record<string, unknown> {
    const frame: Record<string, unknown> = { op: "message", room: this.room, data: JSON.parse(this.envelope.data) };
    if (this.envelope.offset !== undefined) frame.offset = this.envelope.offset;
    if (this.envelope.from !== undefined && this.envelope.from !== "") frame.from = this.envelope.from;
    return frame;
  }
}

/** A `direct` push to a user's connections. */
export class DirectFrame extends SharedFrame {
  private readonly envelope: Envelope;

  constructor(envelope: Envelope) {
    super();
    this.envelope = envelope;
  }

  protected encodeJson(): string {
    return encodeDirectFrame(this.envelope.data, this.envelope.from);
  }

  protected encodeObject(): Record<string, unknown> {
    const frame: Record<string, unknown> = { op: "direct", data: JSON.parse(this.envelope.data) };
    if (this.envelope.from !== undefined && this.envelope.from !== "") frame.from = this.envelope.from;
    return frame;
  }
}

/** A `join` or `leave` push: the member travels as JSON text in the envelope's payload. */
export class MemberFrame extends SharedFrame {
  private readonly op: "join" | "leave";
  private readonly room: string;
  private readonly memberJson: string;

  constructor(op: "join" | "leave", room: string, memberJson: string) {
    super();
    this.op = op;
    this.room = room;
    this.memberJson = memberJson;
  }

  protected encodeJson(): string {
    return encodeMemberFrame(this.op, this.room, this.memberJson);
  }

  protected encodeObject(): Record<string, unknown> {
    return { op: this.op, room: this.room, member: JSON.parse(this.memberJson) };
  }
}
