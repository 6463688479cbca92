import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeClientFrame, type PublishCommand } from "crier-protocol";
import { decodeClientFrameMsgpack, encodeServerFrameMsgpack } from "crier-protocol/msgpack";
import { jsonCodec } from "./codec.js";
import { msgpackCodec } from "./msgpack.js";

const PUSH = { op: "message", room: "r", data: { text: "é", n: 1 }, offset: 7 };

test("the MessagePack codec reads binary frames as Node (Uint8Array) and browsers (ArrayBuffer) hand them over", () => {
  const bytes = encodeServerFrameMsgpack(PUSH);
  assert.deepEqual(msgpackCodec.decode(bytes), PUSH);
  const copy = new ArrayBuffer(bytes.length);
  new Uint8Array(copy).set(bytes);
  assert.deepEqual(msgpackCodec.decode(copy), PUSH);
});

test("each codec refuses the other's frames instead of guessing", () => {
  assert.equal(msgpackCodec.decode(JSON.stringify(PUSH)), undefined);
  assert.equal(jsonCodec.decode(encodeServerFrameMsgpack(PUSH)), undefined);
  assert.equal(msgpackCodec.decode(new Uint8Array([0xc1])), undefined, "0xc1 is never valid MessagePack");
});

test("commands encode to what the server decodes", () => {
  const command: PublishCommand = { op: "publish", room: "r", data: [1, "two", null], id: 3 };
  assert.deepEqual(decodeClientFrame(String(jsonCodec.encode(command))), { kind: "command", command });
  const packed = msgpackCodec.encode(command);
  assert.ok(packed instanceof Uint8Array);
  assert.deepEqual(decodeClientFrameMsgpack(packed), { kind: "command", command });
  assert.equal(msgpackCodec.binary, true);
  assert.equal(msgpackCodec.protocol, "crier.v1.msgpack");
});
