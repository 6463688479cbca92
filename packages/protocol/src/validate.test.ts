// Validation of client frames: what is fatal (4002), what is bad_request, and
// that valid frames come out typed and stripped of unknown fields.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { shouldReconnect } from "./codes.js";
import { encodeDirectFrame, encodeMemberFrame, encodeMessageFrame } from "./json.js";
import { decodeClientFrameMsgpack, encodeServerFrameMsgpack } from "./msgpack.js";
import { isValidRoom, namespaceOf } from "./room.js";
import { decodeClientFrame } from "./validate.js";

describe("decodeClientFrame", () => {
  test("valid commands come out typed, unknown fields dropped", () => {
    assert.deepEqual(decodeClientFrame('{"op":"subscribe","room":"chat:1","id":4,"extra":true}'), {
      kind: "command",
      command: { op: "subscribe", room: "chat:1", since: undefined, id: 4 },
    });
    assert.deepEqual(decodeClientFrame('{"op":"publish","room":"r","data":null}'), {
      kind: "command",
      command: { op: "publish", room: "r", data: null },
    });
  });

  test("presence_stats takes a valid room, like presence", () => {
    assert.deepEqual(decodeClientFrame('{"op":"presence_stats","room":"chat:1","id":2}'), {
      kind: "command",
      command: { op: "presence_stats", room: "chat:1", id: 2 },
    });
    const decoded = decodeClientFrame('{"op":"presence_stats","room":"no spaces","id":3}');
    assert.equal(decoded.kind, "invalid");
    if (decoded.kind === "invalid") assert.match(decoded.error.message, /field 'room'/);
  });

  for (const text of ["", "nope", "[]", "1", '"x"', "null", "true"]) {
    test(`${JSON.stringify(text)} is fatal`, () => {
      assert.equal(decodeClientFrame(text).kind, "fatal");
    });
  }

  test("an invalid frame keeps a valid id and its op", () => {
    const decoded = decodeClientFrame('{"op":"publish","id":9,"room":"r"}');
    assert.equal(decoded.kind, "invalid");
    if (decoded.kind !== "invalid") return;
    assert.equal(decoded.id, 9);
    assert.equal(decoded.op, "publish");
    assert.equal(decoded.error.code, "bad_request");
  });

  test("since must have a non-negative integer offset and a string epoch", () => {
    assert.equal(decodeClientFrame('{"op":"subscribe","room":"r","since":{"offset":1.5,"epoch":"e"}}').kind, "invalid");
    assert.equal(decodeClientFrame('{"op":"subscribe","room":"r","since":{"offset":1}}').kind, "invalid");
    const ok = decodeClientFrame('{"op":"subscribe","room":"r","since":{"offset":0,"epoch":"e"}}');
    assert.equal(ok.kind === "command" && ok.command.op === "subscribe" && ok.command.since?.epoch, "e");
  });

  test("connect's subs map room names to positions; anything else is a bad_request naming the field", () => {
    const ok = decodeClientFrame(
      '{"op":"connect","subs":{"notify:a":{"offset":3,"epoch":"e"},"__proto__":{"offset":0,"epoch":"f"}}}',
    );
    assert.equal(ok.kind, "command");
    const subs = ok.kind === "command" && ok.command.op === "connect" ? ok.command.subs : undefined;
    assert.deepEqual({ ...subs }, { "notify:a": { offset: 3, epoch: "e" }, ["__proto__"]: { offset: 0, epoch: "f" } });
    assert.equal(Object.getPrototypeOf(subs), null, "a room named __proto__ is a key, not a prototype");
    const many = Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`r${i}`, { offset: 0, epoch: "e" }]));
    for (const subsField of [
      '"x"',
      "[]",
      '{"no room":{"offset":1,"epoch":"e"}}',
      '{"r":{"offset":-1,"epoch":"e"}}',
      '{"r":1}',
      JSON.stringify(many),
    ]) {
      const decoded = decodeClientFrame(`{"op":"connect","id":1,"subs":${subsField}}`);
      assert.equal(decoded.kind, "invalid", subsField.slice(0, 40));
      if (decoded.kind === "invalid")
        assert.match(decoded.error.message, /field 'subs' must be an object of at most 1000 room names/);
    }
  });
});

describe("rooms", () => {
  test("names of 1-200 allowed characters are valid", () => {
    for (const room of ["a", "chat:42", "A-z_0.9@x/y=z", "x".repeat(200)]) assert.ok(isValidRoom(room), room);
    for (const room of ["", "a b", "x".repeat(201), "é", "a#b", 5, null]) assert.ok(!isValidRoom(room), String(room));
  });

  test("the namespace is the part before the first colon", () => {
    assert.equal(namespaceOf("chat:1:2"), "chat");
    assert.equal(namespaceOf("lobby"), "");
    assert.equal(namespaceOf(":x"), "");
  });
});

describe("encoding", () => {
  test("message and direct frames are built around the payload's JSON text", () => {
    const text = encodeMessageFrame('r"q', '{"a":[1,"\\n"]}', 7, "u");
    assert.deepEqual(JSON.parse(text), { op: "message", room: 'r"q', data: { a: [1, "\n"] }, offset: 7, from: "u" });
    assert.deepEqual(JSON.parse(encodeMessageFrame("r", "1")), { op: "message", room: "r", data: 1 });
    assert.deepEqual(JSON.parse(encodeDirectFrame('"x"', "")), { op: "direct", data: "x" });
  });

  test("join and leave frames are built around the member's JSON text", () => {
    const member = { user: "u", client: "c", info: { name: 'A "q"' } };
    assert.deepEqual(JSON.parse(encodeMemberFrame("join", 'r"1', JSON.stringify(member))), {
      op: "join",
      room: 'r"1',
      member,
    });
    assert.deepEqual(JSON.parse(encodeMemberFrame("leave", "r", '{"user":"","client":"c"}')), {
      op: "leave",
      room: "r",
      member: { user: "", client: "c" },
    });
  });

  test("MessagePack frames round-trip; non-maps are fatal", () => {
    const bytes = encodeServerFrameMsgpack({ op: "publish", room: "r", data: { n: 1 }, id: 3 });
    assert.deepEqual(decodeClientFrameMsgpack(bytes), {
      kind: "command",
      command: { op: "publish", room: "r", data: { n: 1 }, id: 3 },
    });
    assert.equal(decodeClientFrameMsgpack(Buffer.from([0x93, 1, 2, 3])).kind, "fatal");
    assert.equal(decodeClientFrameMsgpack(Buffer.from([0xc1])).kind, "fatal");
  });
});

describe("close codes", () => {
  test("4500-4999 and going-away/abnormal/error/restart reconnect; 4000-4499 and a normal close do not", () => {
    for (const code of [4500, 4502, 4503, 4504, 4508, 4999, 1001, 1006, 1011, 1012])
      assert.ok(shouldReconnect(code), String(code));
    for (const code of [4000, 4001, 4003, 4005, 4009, 4499, 1000, 1008, 1009])
      assert.ok(!shouldReconnect(code), String(code));
  });
});
