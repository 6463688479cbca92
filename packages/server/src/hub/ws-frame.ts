// A complete server-to-client WebSocket frame (RFC 6455 §5.2): FIN, opcode,
// length, payload. Server frames are not masked, so one publication's frame is
// the same bytes for every recipient: it is built once and written to each
// socket as is, with no per-recipient header or copy.

export const OPCODE_TEXT = 0x1;
export const OPCODE_BINARY = 0x2;
export type Opcode = typeof OPCODE_TEXT | typeof OPCODE_BINARY;

export function wsFrame(payload: Buffer, opcode: Opcode): Buffer {
  const frame = frameFor(payload.length, opcode);
  payload.copy(frame, frame.length - payload.length);
  return frame;
}

/** A text frame around `text`, encoded as UTF-8 straight into the frame (no intermediate buffer). */
export function wsTextFrame(text: string): Buffer {
  const length = Buffer.byteLength(text);
  const frame = frameFor(length, OPCODE_TEXT);
  frame.write(text, frame.length - length, "utf8");
  return frame;
}

/** A frame of `length` payload bytes with its header written and the payload left to fill. */
export function frameFor(length: number, opcode: Opcode): Buffer {
  const header = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(header + length);
  frame[0] = 0x80 | opcode;
  if (header === 2) {
    frame[1] = length;
  } else if (header === 4) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  return frame;
}
