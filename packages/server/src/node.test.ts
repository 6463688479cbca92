// The library API: a node attached to an application's own HTTP server, the
// backend publisher methods, and graceful close.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { pino } from "pino";
import { TestClient } from "../../../test/support/ws-client.js";
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
