// Run by test/integration/packaging.test.ts with plain node in a project that
// installed the packed packages: every entry point imports as built JavaScript,
// an embedded crier attached to an http server delivers to the SDK over JSON
// and MessagePack. `node roundtrip.mjs ws` uses the `ws` package (Node 20);
// `node --experimental-websocket roundtrip.mjs global` (Node 20) or plain
// `node roundtrip.mjs global` (Node 22+) uses the global WebSocket.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { CrierNode } from "crier";
import { CrierClient } from "crier-client";
import { msgpackCodec } from "crier-client/msgpack";
import { isValidRoom } from "crier-protocol";
import { decodeServerFrameMsgpack, encodeServerFrameMsgpack } from "crier-protocol/msgpack";

const mode = process.argv[2];
assert.ok(mode === "ws" || mode === "global", "usage: node roundtrip.mjs ws|global");
if (mode === "global") assert.equal(typeof globalThis.WebSocket, "function", "this node has no global WebSocket");
// The SDK's default is globalThis.WebSocket: in global mode no option is passed.
const socket = mode === "ws" ? { WebSocket: (await import("ws")).WebSocket } : {};

assert.ok(isValidRoom("lobby"));
assert.deepEqual(decodeServerFrameMsgpack(encodeServerFrameMsgpack({ op: "ping" })), { op: "ping" });

const crier = await CrierNode.create({ config: { apiKey: "packaging-test-key", logLevel: "warn" } });
const server = createServer((_request, response) => response.writeHead(404).end());
crier.attach(server);
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const url = `ws://127.0.0.1:${server.address().port}/ws`;

for (const [name, codec] of [
  ["json", undefined],
  ["msgpack", msgpackCodec],
]) {
  const client = new CrierClient(url, { ...socket, ...(codec === undefined ? {} : { codec }) });
  let delivered;
  const received = new Promise((resolve) => {
    delivered = resolve;
  });
  const subscription = client.subscribe("lobby", (message) => delivered(message.data));
  await client.connect();
  await subscription.ready;
  await crier.publish("lobby", { text: `hello over ${name}` });
  assert.deepEqual(await received, { text: `hello over ${name}` });
  client.close();
  console.log(`round trip over ${name} with ${mode === "ws" ? "the ws package" : "the global WebSocket"}`);
}

await crier.close();
server.close();
