// What the HTTP fallback's endpoints answer before a session exists (method,
// missing connect frame, per-address limit, shutdown) and what a stream
// carries on one instance: the session id on `connected`, shared events, and
// an SSE session meeting WebSocket clients in the same room.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startNode, type TestNode } from "../../../../test/support/node.js";
import { SseTestClient } from "../../../../test/support/sse-client.js";
import { waitUntil } from "../../../../test/support/wait.js";

describe("SSE endpoint", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({ limits: { maxConnectionsPerIp: 2 } });
  });
  after(() => server.close());

  test("a wrong method is 405 with Allow; a stream without its connect frame is 400", async () => {
    const post = await fetch(`${server.httpUrl}/sse`, { method: "POST", body: "{}" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, OPTIONS");
    const get = await fetch(`${server.httpUrl}/emulation`);
    assert.equal(get.status, 405);
    const missing = await fetch(`${server.httpUrl}/sse`);
    assert.equal(missing.status, 400);
    assert.match(await missing.text(), /'connect'/);
  });

  test("connected carries the session; a WebSocket client's publication reaches the stream", async () => {
    const stream = await SseTestClient.connect(server.httpUrl);
    const peer = await server.client();
    try {
      const connected = stream.frames[0];
      assert.ok(connected?.op === "connected");
      assert.equal(stream.session.split(".")[0], connected.node);
      assert.equal((await stream.call({ op: "subscribe", room: "both" })).op, "subscribed");
      await peer.call({ op: "subscribe", room: "both" });
      await peer.call({ op: "publish", room: "both", data: { line: "a\nb" } });
      const message = await stream.seen((f) => f.op === "message", "the publication");
      assert.deepEqual(message, { op: "message", room: "both", data: { line: "a\nb" } });
    } finally {
      stream.drop();
      peer.close();
    }
  });

  test("past limits.maxConnectionsPerIp a stream is refused with 429, and a freed slot is reusable", async () => {
    const streams = [await SseTestClient.connect(server.httpUrl), await SseTestClient.connect(server.httpUrl)];
    await assert.rejects(SseTestClient.open(server.httpUrl), (error: { status?: number }) => error.status === 429);
    streams[0]?.drop();
    await waitUntil("the server sees the stream end", () => server.node.connectionCount() === 1);
    const again = await SseTestClient.connect(server.httpUrl);
    for (const stream of [streams[1], again]) stream?.drop();
  });

  test("on shutdown every stream gets the close event with 4500", async () => {
    const other = await startNode();
    const stream = await SseTestClient.connect(other.httpUrl);
    await other.close();
    const closed = await stream.waitClosed();
    assert.deepEqual(closed, { code: 4500, reason: "server shutting down" });
  });
});
