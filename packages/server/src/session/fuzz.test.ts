// Fuzzing the edge: thousands of random frames — garbage bytes, random JSON,
// commands with fields of random types — against a live node. Every one must
// end in a reply, an `error` with a protocol code, or a close with a protocol
// code; the server must keep serving and leave no index entry behind.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ERROR_CODES } from "crier-protocol";
import { startNode, type TestNode } from "../../../../test/support/node.js";
import { random } from "../../../../test/support/random.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { TestClient } from "../../../../test/support/ws-client.js";

const OPS = [
  "connect",
  "subscribe",
  "unsubscribe",
  "publish",
  "send",
  "presence",
  "history",
  "refresh",
  "pong",
  "dance",
];
const KEYS = ["op", "id", "room", "data", "user", "since", "limit", "token", "info", "name"];

function value(rand: () => number, depth = 0): unknown {
  const pick = Math.floor(rand() * (depth > 2 ? 6 : 9));
  switch (pick) {
    case 0:
      return null;
    case 1:
      return rand() < 0.5;
    case 2:
      return Math.floor((rand() - 0.5) * 2 ** (rand() * 60));
    case 3:
      return rand() * 1e6 - 5e5;
    case 4:
      return ["", "a", "chat:1", "x y", "é", "a".repeat(201), "../..", "\u0000"][Math.floor(rand() * 8)];
    case 5:
      return OPS[Math.floor(rand() * OPS.length)];
    case 6:
      return Array.from({ length: Math.floor(rand() * 4) }, () => value(rand, depth + 1));
    default: {
      const object: Record<string, unknown> = {};
      for (let i = Math.floor(rand() * 5); i > 0; i--)
        object[KEYS[Math.floor(rand() * KEYS.length)] ?? "x"] = value(rand, depth + 1);
      return object;
    }
  }
}

/** A random frame; without `garbage`, always a JSON object shaped like a command (with random field types). */
function frame(rand: () => number, garbage: boolean): { data: string | Buffer; binary: boolean } {
  const kind = garbage ? rand() : 1;
  if (kind < 0.1)
    return {
      data: Buffer.from(Array.from({ length: Math.floor(rand() * 40) }, () => Math.floor(rand() * 256))),
      binary: rand() < 0.5,
    };
  if (kind < 0.25) return { data: JSON.stringify(value(rand)), binary: false };
  const command: Record<string, unknown> = { op: OPS[Math.floor(rand() * OPS.length)] };
  for (let i = Math.floor(rand() * 5); i > 0; i--) command[KEYS[Math.floor(rand() * KEYS.length)] ?? "x"] = value(rand);
  if (rand() < 0.5) command.id = 1 + Math.floor(rand() * 1000);
  return { data: JSON.stringify(command), binary: false };
}

// 1007: a text frame that is not UTF-8, refused by the WebSocket layer (RFC 6455 §8.1).
const CLOSE_CODES = new Set([1000, 1005, 1007, 4001, 4002, 4003, 4005, 4009, 4508]);
const REPLIES = new Set([
  "connected",
  "subscribed",
  "ok",
  "presence",
  "history",
  "message",
  "direct",
  "error",
  "unsubscribed",
  "ping",
]);

let server: TestNode;
before(async () => {
  server = await startNode({
    limits: { maxFrameBytes: 2048, commandsPerSecond: 100_000 },
    namespaces: { chat: { history: { size: 10, ttl: "1m" } } },
  });
});
after(() => server.close());

test("random frames get protocol answers or protocol close codes, and the server keeps serving", async () => {
  const rand = random(20261125);
  let closedWith = 0;
  for (let connection = 0; connection < 60; connection++) {
    const client = await TestClient.open(server.url);
    // Half the connections start properly, so commands past the handshake get fuzzed too.
    if (connection % 2 === 0) await client.call({ op: "connect" });
    for (let i = 0; i < 60 && client.ws.readyState === client.ws.OPEN; i++) {
      // Every third connection gets garbage as well; the others only command-shaped frames.
      const { data, binary } = frame(rand, connection % 3 === 0);
      client.sendRaw(data, binary);
    }
    // A final probe: an open connection must still answer (a connected one with a reply, an unconnected one with 4001).
    if (client.ws.readyState === client.ws.OPEN) client.send({ op: "subscribe", room: "probe", id: 99_999 });
    const outcome = await Promise.race([
      client.closed.then((closed) => ({ closed })),
      client.waitFor((f) => "id" in f && f.id === 99_999, "the probe's reply", 5000).then((reply) => ({ reply })),
    ]);
    if ("closed" in outcome) {
      closedWith++;
      assert.ok(CLOSE_CODES.has(outcome.closed.code), `closed with ${outcome.closed.code} (${outcome.closed.reason})`);
    }
    for (const received of client.frames) {
      assert.ok(REPLIES.has(received.op), `unexpected frame ${JSON.stringify(received)}`);
      if (received.op === "error") assert.ok((ERROR_CODES as readonly string[]).includes(received.code), received.code);
      if (received.op === "error") assert.notEqual(received.code, "internal", `internal error: ${received.message}`);
    }
    client.ws.terminate();
  }
  assert.ok(
    closedWith > 0 && closedWith < 60,
    `closes: ${closedWith} of 60 — the fuzzer should exercise both outcomes`,
  );
  await waitUntil("every fuzzed connection is gone", () => server.node.connectionCount() === 0);
  assert.deepEqual(server.node.hub.stats(), { rooms: 0, users: 0, clients: 0 });
  const healthy = await server.client();
  assert.equal((await healthy.call({ op: "subscribe", room: "after-fuzz" })).op, "subscribed");
  healthy.close();
});
