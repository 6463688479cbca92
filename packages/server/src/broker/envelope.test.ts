// The envelope wire form: what encodeEnvelope writes decodeEnvelope reads back,
// and the parts the Redis history's Lua script assembles give the same bytes.

import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeEnvelope, type Envelope, encodeEnvelope, encodeEnvelopeParts } from "./envelope.js";

const samples: Envelope[] = [
  { kind: "message", room: "chat:1", node: "n1", data: '{"text":"hi"}' },
  {
    kind: "message",
    room: "docs:a/b=c@d.e",
    node: "node-\u00e9",
    from: 'quote " back \\ newline \n',
    data: '{"text":"line\\nbreak","n":[1,2.5,null],"s":"\u2603"}',
  },
  // Fields after offset and epoch in the header (code and reason) must land after them.
  { kind: "disconnect", user: "u1", client: "c9", node: "n2", code: 4500, reason: "going away", data: "" },
  { kind: "unsubscribe", room: "r", user: "u", node: "n", reason: "only a reason", data: "" },
  { kind: "direct", user: "bob", node: "n", code: 1, data: "42" },
  // Presence changes: the member's client in the header, the member as the payload.
  { kind: "join", room: "chat:1", client: "c1", node: "n", data: '{"user":"u","client":"c1","info":{"n":1}}' },
  { kind: "leave", room: "chat:1", client: "c1", node: "n", data: '{"user":"u","client":"c1"}' },
  // An envelope that already carries a position: the parts leave it out, the script's value wins.
  { kind: "message", room: "r", node: "n", offset: 3, epoch: "old", data: '"x"' },
];

test("encodeEnvelope and decodeEnvelope round-trip every field", () => {
  for (const envelope of samples) {
    assert.deepEqual(decodeEnvelope(encodeEnvelope(envelope)), envelope);
  }
});

test("the Lua-built form (head, offset, epoch, tail) is byte for byte encodeEnvelope's", () => {
  const offset = 123_456_789;
  const epoch = "Zq-3_x9AbC0d"; // base64url, as the history stores make them
  for (const envelope of samples) {
    const { head, tail } = encodeEnvelopeParts(envelope);
    // The concatenation the publish script does, operator for operator.
    const built = `${head},"o":${offset},"e":"${epoch}"${tail}`;
    const expected = { ...envelope, offset, epoch };
    assert.equal(built, encodeEnvelope(expected));
    assert.deepEqual(decodeEnvelope(built), expected);
  }
});

test("decodeEnvelope rejects text that is not an envelope", () => {
  assert.throws(() => decodeEnvelope("no header"), /no header line/);
  assert.throws(() => decodeEnvelope('{"k":"bogus","n":"x"}\n{}'), /known kind/);
  assert.throws(() => decodeEnvelope('{"k":"message"}\n{}'), /node id/);
});

test("join and leave envelopes decode with their room, the member's client and the member as payload", () => {
  const member = '{"user":"ann","client":"c7","info":{"name":"Ann"}}';
  for (const kind of ["join", "leave"] as const) {
    const decoded = decodeEnvelope(encodeEnvelope({ kind, room: "chat:9", client: "c7", node: "a", data: member }));
    assert.equal(decoded.kind, kind);
    assert.equal(decoded.room, "chat:9");
    assert.equal(decoded.client, "c7");
    assert.deepEqual(JSON.parse(decoded.data), { user: "ann", client: "c7", info: { name: "Ann" } });
  }
});
