// permessage-deflate end to end: real ws clients with and without the
// extension, of both subprotocols and window sizes, against a listening node.
// What they read must be what was published; what crossed the wire is read
// off their TCP sockets; crier_compressed_frames_total shows a publication
// is compressed once per subprotocol and window, not once per socket.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { JsonValue } from "crier-protocol";
import { pino } from "pino";
import { TestClient } from "../../../../test/support/ws-client.js";
import type { CrierConfigInput } from "../config/schema.js";
import { CrierNode } from "../node.js";

/** About 4 KB of chat-like JSON: what compression is for. */
const LARGE: JsonValue = Array.from({ length: 40 }, (_, i) => ({ user: `user-${i % 7}`, text: "see you at three", i }));
const LARGE_BYTES = Buffer.byteLength(JSON.stringify(LARGE));

async function startNode(config: CrierConfigInput): Promise<{ node: CrierNode; url: string }> {
  const node = await CrierNode.create({
    config: { port: 0, host: "127.0.0.1", ...config },
    logger: pino({ level: "silent" }),
  });
  const { port } = await node.listen();
  return { node, url: `ws://127.0.0.1:${port}/ws` };
}

/** A connected client in `room`, opened with `options`. */
async function member(url: string, room: string, options: Parameters<typeof TestClient.open>[1] = {}) {
  const client = await TestClient.open(url, options);
  assert.equal((await client.call({ op: "connect" })).op, "connected");
  assert.equal((await client.call({ op: "subscribe", room })).op, "subscribed");
  return client;
}

/** Bytes read off the client's TCP socket while `step` runs and its message arrives. */
async function wireBytes(client: TestClient, step: () => Promise<unknown>, expect: JsonValue): Promise<number> {
  const before = client.socket?.bytesRead ?? Number.NaN;
  const arrived = client.next("message");
  await step();
  const frame = await arrived;
  assert.deepEqual(frame.op === "message" ? frame.data : undefined, expect);
  return (client.socket?.bytesRead ?? Number.NaN) - before;
}

async function metric(node: CrierNode, name: string): Promise<number> {
  const { body } = await node.metrics();
  const line = body.split("\n").find((text) => text.startsWith(`${name}{`));
  assert.ok(line !== undefined, `${name} is exported`);
  return Number(line.split(" ").at(-1));
}

describe("delivery.compression enabled", () => {
  let node: CrierNode;
  let url: string;
  before(async () => {
    ({ node, url } = await startNode({
      delivery: { compression: { enabled: true } },
      namespaces: { kept: { history: { size: 10, ttl: "10m" } } },
    }));
  });
  after(() => node.close());

  test("one publication reaches every kind of client intact, compressed once per subprotocol and window", async () => {
    const room = "lobby";
    const deflating = [await member(url, room), await member(url, room)];
    const narrow = await member(url, room, { perMessageDeflate: { serverMaxWindowBits: 10 } });
    const plain = await member(url, room, { perMessageDeflate: false });
    const packed = await member(url, room, { protocols: "crier.v1.msgpack" });
    for (const client of [...deflating, narrow, packed]) assert.equal(client.ws.extensions, "permessage-deflate");
    assert.equal(plain.ws.extensions, "");

    const before = await metric(node, "crier_compressed_frames_total");
    const published = node.publish(room, LARGE);
    const sizes = await Promise.all(
      [...deflating, narrow, plain, packed].map((client) => wireBytes(client, () => published, LARGE)),
    );
    const [first = 0, second = 0, narrowed = 0, uncompressed = 0, msgpack = 0] = sizes;
    assert.ok(uncompressed > LARGE_BYTES, `the plain client read ${uncompressed} bytes for ${LARGE_BYTES}`);
    for (const size of [first, second, narrowed, msgpack]) {
      assert.ok(size < LARGE_BYTES / 3, `a deflating client read ${size} bytes for ${LARGE_BYTES}`);
    }
    assert.equal(first, second, "the two clients with the same window got the same frame");
    // JSON at window 15 (two sockets, one compression), JSON at window 10, MessagePack at 15.
    assert.equal((await metric(node, "crier_compressed_frames_total")) - before, 3);
    for (const client of [...deflating, narrow, plain, packed]) client.ws.close();
  });

  test("frames under minBytes go out uncompressed and still arrive", async () => {
    const client = await member(url, "small");
    const before = await metric(node, "crier_compressed_frames_total");
    const bytes = await wireBytes(client, () => node.publish("small", "hi"), "hi");
    assert.ok(bytes > 0);
    assert.equal(await metric(node, "crier_compressed_frames_total"), before, "nothing was compressed");
    client.ws.close();
  });

  test("a connection's own large replies (a history page) are compressed too", async () => {
    const client = await member(url, "kept:log");
    for (let i = 0; i < 5; i++) await wireBytes(client, () => node.publish("kept:log", LARGE), LARGE);
    const before = client.socket?.bytesRead ?? Number.NaN;
    const reply = await client.call({ op: "history", room: "kept:log", limit: 5 });
    assert.equal(reply.op, "history");
    assert.equal(reply.op === "history" ? reply.messages.length : 0, 5);
    const read = (client.socket?.bytesRead ?? Number.NaN) - before;
    assert.ok(read < LARGE_BYTES, `the 5-message page took ${read} bytes on the wire for ${5 * LARGE_BYTES}`);
    client.ws.close();
  });

  test("compressed client frames are read: the client's own deflated publish arrives", async () => {
    const publisher = await member(url, "echo");
    const reading = publisher.next("message");
    // ws compresses what it sends past its threshold (1 KiB) when the extension is on.
    assert.equal((await publisher.call({ op: "publish", room: "echo", data: LARGE })).op, "ok");
    const frame = await reading;
    assert.deepEqual(frame.op === "message" ? frame.data : undefined, LARGE);
    publisher.ws.close();
  });
});

test("by default the extension is not negotiated, even when the client offers it", async () => {
  const { node, url } = await startNode({});
  try {
    const client = await member(url, "room");
    assert.equal(client.ws.extensions, "");
    const bytes = await wireBytes(client, () => node.publish("room", LARGE), LARGE);
    assert.ok(bytes > LARGE_BYTES);
    const { body } = await node.metrics();
    assert.doesNotMatch(body, /crier_compressed_frames_total/);
    client.ws.close();
  } finally {
    await node.close();
  }
});
