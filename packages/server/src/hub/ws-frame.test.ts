// The prebuilt frames must be exactly what a WebSocket client parses: checked
// with ws's own Receiver at every length class.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";
import { OPCODE_BINARY, OPCODE_TEXT, wsFrame, wsTextFrame } from "./ws-frame.js";

/** ws's frame parser (exported by ws, not declared by @types/ws). */
interface FrameReceiver {
  on(event: "message", listener: (data: Buffer, binary: boolean) => void): void;
  on(event: "error", listener: (error: Error) => void): void;
  write(chunk: Buffer): void;
}
const { Receiver } = createRequire(import.meta.url)("ws") as {
  Receiver: new (options: { isServer: boolean; maxPayload: number }) => FrameReceiver;
};

function parse(frame: Buffer): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve, reject) => {
    // A client-side receiver: server frames arrive unmasked.
    const receiver = new Receiver({ isServer: false, maxPayload: 0 });
    receiver.on("message", (data: Buffer, binary: boolean) => resolve({ data, binary }));
    receiver.on("error", reject);
    receiver.write(frame);
  });
}

for (const length of [0, 1, 125, 126, 127, 65_535, 65_536, 200_000]) {
  test(`a ${length}-byte payload round-trips through ws's receiver, as text and as binary`, async () => {
    const payload = Buffer.alloc(length, "a");
    const text = await parse(wsFrame(payload, OPCODE_TEXT));
    assert.equal(text.binary, false);
    assert.ok(text.data.equals(payload));
    const binary = await parse(wsFrame(payload, OPCODE_BINARY));
    assert.equal(binary.binary, true);
    assert.ok(binary.data.equals(payload));
  });

  test(`a ${length}-byte UTF-8 text with multi-byte characters framed from a string round-trips`, async () => {
    // "é" is 2 bytes in UTF-8: the header must carry bytes, not characters.
    const text = "é".repeat(Math.floor(length / 2)) + "a".repeat(length % 2);
    assert.equal(Buffer.byteLength(text), length);
    const parsed = await parse(wsTextFrame(text));
    assert.equal(parsed.binary, false);
    assert.equal(parsed.data.toString("utf8"), text);
  });
}
