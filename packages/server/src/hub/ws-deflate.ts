// permessage-deflate (RFC 7692) for prebuilt frames. A publication is
// compressed once, not once per recipient: the endpoint negotiates
// `server_no_context_takeover`, so every compressed message stands alone and
// the same bytes are valid on every socket that negotiated the extension
// with the same window size. Frames under `minBytes`, or that deflate would
// not make smaller, go out uncompressed (RSV1 clear), which the extension allows.

import { constants, deflateRawSync } from "node:zlib";
import { frameFor, type Opcode } from "./ws-frame.js";

export interface DeflateSettings {
  /** Payloads smaller than this are not compressed (delivery.compression.minBytes). */
  minBytes: number;
  /** zlib level, 1 (fastest) to 9 (smallest) (delivery.compression.level). */
  level: number;
}

/** The deflate tail that RFC 7692 §7.2.1 removes from every compressed message. */
const TAIL_LENGTH = 4;
/** RSV1: this message is compressed. */
const RSV1 = 0x40;

export class FrameDeflater {
  readonly settings: DeflateSettings;
  /** Running totals (plain numbers: the hot path only adds): payloads compressed, their bytes before and after. */
  readonly counters = { frames: 0, bytesIn: 0, bytesOut: 0 };

  constructor(settings: DeflateSettings) {
    this.settings = settings;
  }

  /**
   * `payload` as one complete compressed WebSocket frame for a peer that
   * accepts `windowBits`; undefined when it stays uncompressed (too small,
   * not smaller, or a window zlib cannot produce).
   */
  frame(payload: Buffer, opcode: Opcode, windowBits: number): Buffer | undefined {
    // zlib's raw deflate has no 8-bit window (it would use 9, which an 8-bit peer cannot read).
    if (payload.length < this.settings.minBytes || windowBits < 9) return undefined;
    const deflated = deflateRawSync(payload, {
      level: this.settings.level,
      windowBits,
      finishFlush: constants.Z_SYNC_FLUSH,
    });
    const length = deflated.length - TAIL_LENGTH;
    if (length >= payload.length) return undefined;
    this.counters.frames += 1;
    this.counters.bytesIn += payload.length;
    this.counters.bytesOut += length;
    const frame = frameFor(length, opcode);
    frame[0] = (frame[0] ?? 0) | RSV1;
    deflated.copy(frame, frame.length - length, 0, length);
    return frame;
  }
}

/** A socket's side of the extension: the window its peer accepts for server messages. */
export interface DeflatePeer {
  deflater: FrameDeflater;
  windowBits: number;
}

/**
 * The server window a negotiated `Sec-WebSocket-Extensions` answer allows
 * (15 unless it names `server_max_window_bits`); undefined when the answer
 * does not accept permessage-deflate.
 */
export function negotiatedWindowBits(answer: string | undefined): number | undefined {
  if (answer === undefined) return undefined;
  for (const extension of answer.split(",")) {
    const [name, ...params] = extension.split(";").map((part) => part.trim());
    if (name !== "permessage-deflate") continue;
    for (const param of params) {
      const [key, value] = param.split("=").map((part) => part.trim().replace(/^"|"$/g, ""));
      if (key === "server_max_window_bits" && value !== undefined) return Number.parseInt(value, 10);
    }
    return 15;
  }
  return undefined;
}
