// A complete server-to-client WebSocket frame (RFC 6455 §5.2): FIN, opcode,
// length, payload. Server frames are not masked, so one publication's frame is
// the same bytes for every recipient: it is built once and written to each
// socket as is, with no per-recipient header or copy.

export const OPCODE_TEXT = 0x1;
export const OPCODE_BINARY = 0x2;

export function wsFrame(payload: Buffer, opcode: typeof OPCODE_TEXT | typeof OPCODE_BINARY): Buffer {
  const length = payload.length;
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
  payload.copy(frame, header);
  return frame;
}
