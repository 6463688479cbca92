// The library API: a node attached to an application's own HTTP server, the
// backend publisher methods, and graceful close.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { ProtocolError } from "crier-protocol";
import { pino } from "pino";
import { TestClient } from "../../../test/support/ws-client.js";
import type { Envelope } from "./broker/envelope.js";
import { MemoryBroker } from "./broker/memory.js";
import { loadConfig } from "./config/load.js";
import { CrierNode } from "./node.js";

test("attach() serves WebSockets and the API beside the application's own routes; close() ends clients with 4500", async () => {
  const crier = await CrierNode.create({ config: { apiKey: "attached-key" }, logger: pino({ level: "silent" }) });
  const app = createServer((request, response) => {
    response.writeHead(200, { "Content-Type": "text/plain" });
    response.end(`app saw ${request.url}`);
  });
  crier.attach(app);
  await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
  const { port } = app.address() as AddressInfo;
  const base = `http://127.0.0.1:${port}`;
  try {
    assert.equal(await (await fetch(`${base}/hello`)).text(), "app saw /hello");
    assert.equal((await fetch(`${base}/readyz`)).status, 200);

    const client = await TestClient.connect(`ws://127.0.0.1:${port}/ws`);
    await client.call({ op: "subscribe", room: "embedded" });
    const published = await fetch(`${base}/api/publish`, {
      method: "POST",
      headers: { Authorization: "Bearer attached-key" },
      body: JSON.stringify({ room: "embedded", data: "via http" }),
    });
    assert.equal(published.status, 200);
    assert.deepEqual(await client.next("message"), { op: "message", room: "embedded", data: "via http" });
    assert.deepEqual(await crier.publish("embedded", { via: "library" }), {});
    assert.deepEqual(await client.next("message"), { op: "message", room: "embedded", data: { via: "library" } });

    const closing = crier.close();
    assert.equal((await client.waitClosed()).code, 4500);
    await closing;
    assert.equal((await fetch(`${base}/readyz`)).status, 503, "a closed node is not ready");
    assert.equal(await (await fetch(`${base}/still-here`)).text(), "app saw /still-here", "the app keeps serving");
  } finally {
    await crier.close();
    app.closeAllConnections();
    await new Promise((resolve) => app.close(resolve));
  }
});

test("publish() refuses an invalid room name", async () => {
  const crier = await CrierNode.create({ logger: pino({ level: "silent" }) });
  try {
    await assert.rejects(crier.publish("bad room", 1), /invalid room name/);
  } finally {
    await crier.close();
  }
});

test("POST /api/broadcast reports per room when only some rooms could be published", async () => {
  class PartlyDown extends MemoryBroker {
    override publish(channel: string, envelope: Envelope): Promise<void> {
      if (channel.endsWith(":down")) return Promise.reject(new ProtocolError("unavailable", "that shard is down"));
      return super.publish(channel, envelope);
    }
  }
  const crier = await CrierNode.create({
    config: { apiKey: "partial-key", port: 0, host: "127.0.0.1" },
    broker: new PartlyDown(),
    logger: pino({ level: "silent" }),
  });
  try {
    const { port } = await crier.listen();
    const post = (rooms: string[]) =>
      fetch(`http://127.0.0.1:${port}/api/broadcast`, {
        method: "POST",
        headers: { Authorization: "Bearer partial-key" },
        body: JSON.stringify({ rooms, data: 1 }),
      });
    const partial = await post(["up", "down"]);
    assert.equal(partial.status, 200);
    assert.deepEqual(await partial.json(), {
      results: [{ room: "up" }, { room: "down", error: { code: "unavailable", message: "that shard is down" } }],
    });
    const none = await post(["down"]);
    assert.equal(none.status, 503);
  } finally {
    await crier.close();
  }
});

test("a configuration validated by loadConfig is not validated again (durations keep their unit)", async () => {
  const config = loadConfig({ values: { namespaces: { chat: { history: { size: 10, ttl: "10m" } } } } });
  assert.equal(config.namespaces.chat?.history?.ttlMs, 600_000);
  const crier = await CrierNode.create({ config, logger: pino({ level: "silent" }) });
  try {
    assert.equal(crier.config.namespaces.chat?.history?.ttlMs, 600_000, "ten minutes, not ten thousand");
  } finally {
    await crier.close();
  }
});
