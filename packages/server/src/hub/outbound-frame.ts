// A publication's frame, shared by all its local recipients and encoded at
// most once per subprotocol, on first use: a room of JSON clients never pays
// for MessagePack, and a hundred recipients cost one encoding, not a hundred.

import { encodeDirectFrame, encodeMessageFrame } from "crier-protocol";
import { encodeServerFrameMsgpack } from "crier-protocol/msgpack";
import type { Envelope } from "../broker/envelope.js";

export interface OutboundFrame {
  /** The frame as JSON text, UTF-8. */
  json(): Buffer;
  /** The frame as a MessagePack map. */
  msgpack(): Buffer;
}

/** A `message` push: built around the payload's JSON text, which is never parsed for JSON clients. */
export class MessageFrame implements OutboundFrame {
  private readonly room: string;
  private readonly envelope: Envelope;
  private jsonBytes: Buffer | undefined;
  private msgpackBytes: Buffer | undefined;

  constructor(room: string, envelope: Envelope) {
    this.room = room;
    this.envelope = envelope;
  }

  json(): Buffer {
    this.jsonBytes ??= Buffer.from(
      encodeMessageFrame(this.room, this.envelope.data, this.envelope.offset, this.envelope.from),
    );
    return this.jsonBytes;
  }

  msgpack(): Buffer {
    if (this.msgpackBytes === undefined) {
      const frame: Record<string, unknown> = { op: "message", room: this.room, data: JSON.parse(this.envelope.data) };
      if (this.envelope.offset !== undefined) frame.offset = this.envelope.offset;
      if (this.envelope.from !== undefined && this.envelope.from !== "") frame.from = this.envelope.from;
      this.msgpackBytes = encodeServerFrameMsgpack(frame);
    }
    return this.msgpackBytes;
  }
}

/** A `direct` push to a user's connections. */
export class DirectFrame implements OutboundFrame {
  private readonly envelope: Envelope;
  private jsonBytes: Buffer | undefined;
  private msgpackBytes: Buffer | undefined;

  constructor(envelope: Envelope) {
    this.envelope = envelope;
  }

  json(): Buffer {
    this.jsonBytes ??= Buffer.from(encodeDirectFrame(this.envelope.data, this.envelope.from));
    return this.jsonBytes;
  }

  msgpack(): Buffer {
    if (this.msgpackBytes === undefined) {
      const frame: Record<string, unknown> = { op: "direct", data: JSON.parse(this.envelope.data) };
      if (this.envelope.from !== undefined && this.envelope.from !== "") frame.from = this.envelope.from;
      this.msgpackBytes = encodeServerFrameMsgpack(frame);
    }
    return this.msgpackBytes;
  }
}
