import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { constants, inflateRawSync } from "node:zlib";
import { FrameDeflater, negotiatedWindowBits } from "./ws-deflate.js";
import { OPCODE_BINARY, OPCODE_TEXT } from "./ws-frame.js";

/** The payload of an unmasked server frame: its header read per RFC 6455 §5.2. */
function parseFrame(frame: Buffer): { first: number; payload: Buffer } {
  const length7 = (frame[1] ?? 0) & 0x7f;
  const offset = length7 < 126 ? 2 : length7 === 126 ? 4 : 10;
  const length = length7 < 126 ? length7 : length7 === 126 ? frame.readUInt16BE(2) : Number(frame.readBigUInt64BE(2));
  assert.equal(frame.length, offset + length, "the header's length is the payload's");
  return { first: frame[0] ?? 0, payload: frame.subarray(offset) };
}

/** What a peer does with a compressed message (RFC 7692 §7.2.2): append the tail, inflate. */
function inflate(payload: Buffer, windowBits: number): Buffer {
  const message = Buffer.concat([payload, Buffer.from([0x00, 0x00, 0xff, 0xff])]);
  // A message ends on a sync flush, not a final block: read it as a peer reads one.
  return inflateRawSync(message, { windowBits, finishFlush: constants.Z_SYNC_FLUSH });
}

const chat = Buffer.from(
  JSON.stringify({
    op: "message",
    room: "chat:lobby",
    data: Array.from({ length: 40 }, (_, i) => ({ user: `user-${i % 7}`, text: "hello there, how is it going?", i })),
  }),
);

for (const length of [600, 70_000]) {
  test(`a ${length}-byte payload becomes one compressed frame (FIN, RSV1, its opcode) that inflates back`, () => {
    const deflater = new FrameDeflater({ minBytes: 512, level: 1 });
    const payload = Buffer.concat(Array.from({ length: Math.ceil(length / chat.length) }, () => chat)).subarray(
      0,
      length,
    );
    const frame = deflater.frame(payload, OPCODE_TEXT, 15);
    assert.ok(frame !== undefined);
    const { first, payload: compressed } = parseFrame(frame);
    assert.equal(first, 0x80 | 0x40 | OPCODE_TEXT);
    assert.ok(compressed.length < payload.length / 2, `${compressed.length} bytes for ${payload.length}`);
    assert.deepEqual(inflate(compressed, 15), payload);
    assert.deepEqual(deflater.counters, { frames: 1, bytesIn: payload.length, bytesOut: compressed.length });
  });
}

test("a smaller window is honoured: the frame inflates within it", () => {
  const deflater = new FrameDeflater({ minBytes: 0, level: 9 });
  const frame = deflater.frame(chat, OPCODE_BINARY, 10);
  assert.ok(frame !== undefined);
  const { first, payload } = parseFrame(frame);
  assert.equal(first, 0x80 | 0x40 | OPCODE_BINARY);
  assert.deepEqual(inflate(payload, 10), chat);
});

test("small payloads, incompressible ones and an 8-bit window stay uncompressed, and are not counted", () => {
  const deflater = new FrameDeflater({ minBytes: 512, level: 1 });
  assert.equal(deflater.frame(chat.subarray(0, 511), OPCODE_TEXT, 15), undefined, "under minBytes");
  assert.equal(deflater.frame(randomBytes(4096), OPCODE_BINARY, 15), undefined, "deflate would not shrink it");
  assert.equal(deflater.frame(chat, OPCODE_TEXT, 8), undefined, "zlib has no 8-bit raw window");
  assert.deepEqual(deflater.counters, { frames: 0, bytesIn: 0, bytesOut: 0 });
});

test("negotiatedWindowBits reads the server window of an accepted permessage-deflate", () => {
  assert.equal(negotiatedWindowBits(undefined), undefined);
  assert.equal(negotiatedWindowBits(" x-webkit-deflate-frame"), undefined);
  assert.equal(negotiatedWindowBits(" permessage-deflate; server_no_context_takeover"), 15);
  assert.equal(negotiatedWindowBits("permessage-deflate; server_no_context_takeover; server_max_window_bits=10"), 10);
  assert.equal(negotiatedWindowBits('permessage-deflate; server_max_window_bits="12"; client_max_window_bits=15'), 12);
});
