// What the HTTP fallback's endpoints answer before a session exists (method,
// missing connect frame, per-address limit, shutdown), how their refusals reach
// the metrics, the log and the console's warnings, and what a stream carries on
// one instance: the session id on `connected`, shared events, and an SSE session
// meeting WebSocket clients in the same room.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { captureLog, refusedCount, startNode, type TestNode } from "../../../../test/support/node.js";
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

describe("SSE endpoint refusals", () => {
  let server: TestNode;
  const log = captureLog();
  before(async () => {
    server = await startNode(
      { limits: { maxConnectionsPerIp: 1, maxHttpBodyBytes: 1024 }, allowedOrigins: ["https://app.example"] },
      undefined,
      log.logger,
    );
  });
  after(() => server.close());

  const warnings = async (): Promise<{ totals: Record<string, number>; recent: { kind: string; detail: string }[] }> =>
    (await server.api("/api/warnings")).body as {
      totals: Record<string, number>;
      recent: { kind: string; detail: string }[];
    };
  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(`${server.httpUrl}/emulation`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...headers },
      body,
    });

  test("each is counted, told to the console's warnings and logged, at most a line per reason per interval", async () => {
    const foreign = await fetch(`${server.httpUrl}/sse?connect=%7B%7D`, {
      headers: { Origin: "https://evil.example" },
    });
    assert.equal(foreign.status, 403);
    await foreign.body?.cancel();

    const stream = await SseTestClient.connect(server.httpUrl);
    await assert.rejects(SseTestClient.open(server.httpUrl), (error: { status?: number }) => error.status === 429);
    stream.drop();

    const tooLarge = await post(JSON.stringify({ session: "x", frames: ["y".repeat(2000)] }));
    assert.equal(tooLarge.status, 413);
    await tooLarge.body?.cancel();

    for (let i = 0; i < 3; i++) {
      const unknown = await post(JSON.stringify({ session: `${server.node.nodeId}.nope${i}`, frames: [] }));
      assert.equal(unknown.status, 404);
      await unknown.body?.cancel();
    }

    for (const [reason, count] of [
      ["origin", 1],
      ["max_connections_per_ip", 1],
      ["body_too_large", 1],
      ["unknown_session", 3],
    ] as const) {
      assert.equal(await refusedCount(server, reason), count, reason);
    }
    const { totals, recent } = await warnings();
    assert.deepEqual(
      [totals.origin_refused, totals.connection_limit, totals.body_too_large, totals.unknown_session],
      [1, 1, 1, 3],
    );
    assert.ok(recent.some((w) => w.kind === "origin_refused" && w.detail.includes("https://evil.example")));
    assert.ok(recent.some((w) => w.kind === "connection_limit" && w.detail.includes("limits.maxConnectionsPerIp")));
    assert.ok(recent.some((w) => w.kind === "unknown_session" && w.detail.includes(".nope2")));

    // Three unknown sessions, one line: the others are counted on the next line for that reason.
    const lines = log.lines.filter((line) => line.reason === "unknown_session");
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.match(String(lines[0]?.msg), /HTTP fallback request refused: POST \/emulation for session/);
    for (const reason of ["origin", "max_connections_per_ip", "body_too_large"]) {
      assert.equal(log.lines.filter((line) => line.reason === reason).length, 1, reason);
    }
  });
});
