// Generated client frames for the fuzz run: commands shaped like the
// protocol's (docs/protocol.md) with fields of the right or a wrong type, and
// hostile frames (garbage bytes, truncated or deeply nested documents, keys
// such as __proto__, numbers out of range, oversize frames, the wrong frame
// type for the subprotocol). Each says what the server owes it.

import { Packr } from "msgpackr";

export type Codec = "json" | "msgpack";

export interface Fuzzed {
  data: string | Buffer;
  binary: boolean;
  /** The id a reply must carry (the frame decodes to a command with this id), unless the connection closes. */
  id?: number;
  /** Close codes one of which must end the connection after this frame (it cannot be a command). */
  mustClose?: readonly number[];
  kind: string;
}

const OPS = ["connect", "subscribe", "unsubscribe", "publish", "send", "presence", "history", "refresh", "pong"];
const ROOMS = ["chat:fuzz", "fuzz", "chat:fuzz-2", "a", "x".repeat(200), "ns:", ":", "a/b=c@d.e-f_g"];
const BAD_ROOMS = ["", "x".repeat(201), "a b", "é", "room\u0000", "../..", "*", "{a}"];
const NASTY_KEYS = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "", "op ", "OP", "\u0000"];
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" });

export class FrameGenerator {
  private readonly rand: () => number;
  private readonly maxFrameBytes: number;
  private nextId = 1;

  constructor(rand: () => number, maxFrameBytes: number) {
    this.rand = rand;
    this.maxFrameBytes = maxFrameBytes;
  }

  /** A valid connect (a connection's usual first frame). */
  connect(codec: Codec): Fuzzed {
    const id = this.id();
    return this.encode(codec, { op: "connect", id, name: "fuzz" }, id, "connect");
  }

  /**
   * Any frame: about 70% valid-shaped commands, 22% commands with wrong
   * fields, 8% hostile (of which a quarter end the connection, so connections
   * live for a hundred frames or so and commands past the handshake get fuzzed).
   */
  next(codec: Codec): Fuzzed {
    const r = this.rand();
    if (r < 0.7) return this.valid(codec);
    if (r < 0.92) return this.malformed(codec);
    if (this.rand() >= 0.25) return this.hostile(codec, 0.6 + this.rand() * 0.3);
    const fatal = this.rand() * 0.7;
    return this.hostile(codec, fatal < 0.6 ? fatal : fatal + 0.3);
  }

  private id(): number {
    this.nextId = this.nextId >= 2 ** 31 ? 1 : this.nextId + 1;
    return this.nextId;
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.rand() * items.length)] as T;
  }

  private valid(codec: Codec): Fuzzed {
    const op = this.pick(OPS);
    const withId = this.rand() < 0.8;
    const id = withId ? this.id() : undefined;
    const command: Record<string, unknown> = { op };
    if (id !== undefined) command.id = id;
    const room = this.pick(ROOMS);
    switch (op) {
      case "connect":
        command.info = { n: Math.floor(this.rand() * 100) };
        break;
      case "subscribe":
        command.room = room;
        if (this.rand() < 0.3)
          command.since = { offset: Math.floor(this.rand() * 50), epoch: this.pick(["", "e", "x"]) };
        break;
      case "unsubscribe":
      case "presence":
        command.room = room;
        break;
      case "history":
        command.room = room;
        if (this.rand() < 0.5) command.limit = 1 + Math.floor(this.rand() * 200);
        break;
      case "publish":
        command.room = room;
        command.data = this.value(0);
        break;
      case "send":
        command.user = this.pick(["alice", "bob", "fuzz"]);
        command.data = this.value(0);
        break;
      case "refresh":
        command.token = this.pick(["x", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.x"]);
        break;
    }
    // A command without an id gets no reply on success, so it is owed nothing checkable; nor is pong (no reply).
    return this.encode(codec, command, op === "pong" ? undefined : id, `valid ${op}`);
  }

  private malformed(codec: Codec): Fuzzed {
    const command: Record<string, unknown> = {
      op: this.rand() < 0.9 ? this.pick(OPS) : this.pick(["dance", "", 7, null]),
    };
    for (let i = Math.floor(this.rand() * 4); i >= 0; i--) {
      const key = this.pick([
        "room",
        "data",
        "user",
        "since",
        "limit",
        "token",
        "info",
        "name",
        "extra",
        ...NASTY_KEYS,
      ]);
      command[key] = this.rand() < 0.3 ? this.pick(BAD_ROOMS) : this.value(1);
    }
    const id = this.id();
    command.id = id;
    // An op that is not a string or a bad id leave no id the server can echo (the error then comes without one).
    const owed = typeof command.op === "string" && command.op !== "" && command.op !== "pong" ? id : undefined;
    return this.encode(codec, command, owed, "malformed");
  }

  /** `r` in [0, 0.6) and [0.9, 1): frames that end the connection; [0.6, 0.9): hostile commands. */
  private hostile(codec: Codec, r: number): Fuzzed {
    if (r < 0.15) {
      // Over maxFrameBytes: 4009 (ws itself closes past twice the limit with 1009).
      const size = this.maxFrameBytes + 1 + Math.floor(this.rand() * this.maxFrameBytes);
      const body = JSON.stringify({ op: "publish", room: "fuzz", data: "x".repeat(size) });
      return {
        data: codec === "json" ? body : packr.pack(JSON.parse(body) as unknown),
        binary: codec === "msgpack",
        mustClose: [4009, 1009],
        kind: "oversize",
      };
    }
    if (r < 0.3) {
      // The other frame type for the subprotocol.
      const command = { op: "presence", room: "fuzz", id: this.id() };
      return codec === "json"
        ? { data: packr.pack(command), binary: true, mustClose: [4002], kind: "binary on json" }
        : { data: JSON.stringify(command), binary: false, mustClose: [4002], kind: "text on msgpack" };
    }
    if (r < 0.45) {
      // Random bytes: a text frame of them may not even be UTF-8 (1007).
      const bytes = Buffer.from(
        Array.from({ length: 1 + Math.floor(this.rand() * 64) }, () => Math.floor(this.rand() * 256)),
      );
      if (codec === "json") {
        bytes[0] = 0x7b; // "{": never valid JSON with what follows, most of the time
        bytes[bytes.length - 1] = 0x01;
        return { data: bytes, binary: false, mustClose: [4002, 1007], kind: "garbage text" };
      }
      bytes[0] = 0xc1; // never used in MessagePack
      return { data: bytes, binary: true, mustClose: [4002], kind: "garbage msgpack" };
    }
    if (r < 0.6) {
      // Truncated: a valid command cut short.
      const whole =
        codec === "json"
          ? Buffer.from(JSON.stringify({ op: "subscribe", room: "fuzz", id: 1 }))
          : packr.pack({ op: "subscribe", room: "fuzz", id: 1 });
      const cut = whole.subarray(0, 1 + Math.floor(this.rand() * (whole.length - 2)));
      return {
        data: codec === "json" ? cut.toString("utf8") : cut,
        binary: codec === "msgpack",
        mustClose: [4002],
        kind: "truncated",
      };
    }
    if (r < 0.7) {
      // Deep nesting inside data, within the frame limit.
      const depth = 50 + Math.floor(this.rand() * 1500);
      const id = this.id();
      const json = `{"op":"publish","room":"fuzz","id":${id},"data":${"[".repeat(depth)}${"]".repeat(depth)}}`;
      if (json.length > this.maxFrameBytes) return this.valid(codec);
      if (codec === "json") return { data: json, binary: false, id, kind: "deep json" };
      let nested: unknown = [];
      for (let i = 0; i < Math.min(depth, 500); i++) nested = [nested];
      return this.encode(codec, { op: "publish", room: "fuzz", id, data: nested }, id, "deep msgpack");
    }
    if (r < 0.8) {
      // Prototype keys at the top and inside.
      const id = this.id();
      const key = this.pick(NASTY_KEYS);
      const json = `{"op":"subscribe","room":"fuzz","id":${id},"${key}":{"polluted":true},"data":{"__proto__":{"x":1}}}`;
      if (codec === "json") return { data: json, binary: false, id, kind: "proto keys" };
      const command: Record<string, unknown> = { op: "subscribe", room: "fuzz", id };
      Object.defineProperty(command, key, { value: { polluted: true }, enumerable: true });
      return this.encode(codec, command, id, "proto keys");
    }
    if (r < 0.9) {
      // Numbers past the edges: ids, offsets and limits that are not safe integers.
      const wild = this.pick([-1, 0, 1.5, 2 ** 53 + 2, -(2 ** 60), 1e308, Number.MAX_SAFE_INTEGER]);
      const text = this.pick(["1e400", "-0", "1e-400", "123456789012345678901234567890"]);
      if (codec === "json") {
        const json = `{"op":"history","room":"chat:fuzz","limit":${text},"since":{"offset":${wild},"epoch":"e"},"id":${wild}}`;
        return { data: json, binary: false, kind: "wild numbers" };
      }
      return this.encode(
        codec,
        { op: "history", room: "chat:fuzz", limit: wild, since: { offset: wild, epoch: 1 }, id: wild },
        undefined,
        "wild numbers",
      );
    }
    // Not an object at all: an array, a string, a number.
    const value = this.pick<unknown>([[], [{ op: "connect" }], "connect", 42, null, true]);
    return codec === "json"
      ? { data: JSON.stringify(value), binary: false, mustClose: [4002], kind: "not an object" }
      : { data: packr.pack(value), binary: true, mustClose: [4002], kind: "not a map" };
  }

  /** A JSON value of random shape; msgpack encodes the same values. */
  private value(depth: number): unknown {
    switch (Math.floor(this.rand() * (depth > 2 ? 6 : 8))) {
      case 0:
        return null;
      case 1:
        return this.rand() < 0.5;
      case 2:
        return Math.floor((this.rand() - 0.5) * 2 ** (this.rand() * 60));
      case 3:
        return this.rand() * 1e6 - 5e5;
      case 4:
        return this.pick(["", "a", "é", "\u{1F600}", "x".repeat(300), "\u0000", "<script>", "'; DROP"]);
      case 5:
        return this.pick(OPS);
      case 6:
        return Array.from({ length: Math.floor(this.rand() * 4) }, () => this.value(depth + 1));
      default: {
        const object: Record<string, unknown> = {};
        for (let i = Math.floor(this.rand() * 4); i > 0; i--)
          object[this.pick(["k", "data", "op", "n"])] = this.value(depth + 1);
        return object;
      }
    }
  }

  private encode(codec: Codec, command: Record<string, unknown>, id: number | undefined, kind: string): Fuzzed {
    const data = codec === "json" ? JSON.stringify(command) : packr.pack(command);
    if (data.length > this.maxFrameBytes) {
      return { data, binary: codec === "msgpack", mustClose: [4009, 1009], kind: `${kind} (oversize)` };
    }
    const fuzzed: Fuzzed = { data, binary: codec === "msgpack", kind };
    if (id !== undefined) fuzzed.id = id;
    return fuzzed;
  }
}
