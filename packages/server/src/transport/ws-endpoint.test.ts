// What the endpoint decides before a WebSocket exists (origin, per-address
// limit, path) and the bounded outbound side of a connection (slow consumer).

import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { startNode, type TestNode } from "../../../../test/support/node.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { TestClient } from "../../../../test/support/ws-client.js";

describe("origin policy", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({ allowedOrigins: ["https://app.example.com"] });
  });
  after(() => server.close());

  test("an allowed origin connects", async () => {
    const client = await TestClient.open(server.url, { headers: { Origin: "https://app.example.com" } });
    assert.equal((await client.call({ op: "connect" })).op, "connected");
    client.close();
  });

  test("another origin is refused with 403", async () => {
    await assert.rejects(TestClient.open(server.url, { headers: { Origin: "https://evil.example" } }), /HTTP 403/);
  });

  test("a client that sends no Origin (not a browser) connects", async () => {
    const client = await TestClient.open(server.url);
    assert.equal((await client.call({ op: "connect" })).op, "connected");
    client.close();
  });
});

describe("connections per address", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({ limits: { maxConnectionsPerIp: 3 } });
  });
  after(() => server.close());

  test("past limits.maxConnectionsPerIp the upgrade is refused with 429, and a freed slot is reusable", async () => {
    const clients = await Promise.all([1, 2, 3].map(() => server.client()));
    await assert.rejects(TestClient.open(server.url), /HTTP 429/);
    const first = clients[0];
    assert.ok(first);
    first.close();
    await first.waitClosed();
    await waitUntil("the server sees the close", () => server.node.connectionCount() === 2);
    const again = await server.client();
    assert.equal(server.node.connectionCount(), 3);
    for (const client of [...clients.slice(1), again]) client.close();
  });

  test("other paths are not WebSocket endpoints", async () => {
    await assert.rejects(
      TestClient.open(server.url.replace("/ws", "/other")),
      /Unexpected server response|HTTP|socket hang up/,
    );
  });
});

describe("slow consumer", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({ limits: { outboundQueueBytes: 256 * 1024 } });
  });
  after(() => server.close());

  test("a client that stops reading is closed with 4503 once its queue passes the bound", async () => {
    const reader = await server.client();
    const stalled = await server.client();
    await reader.call({ op: "subscribe", room: "firehose" });
    await stalled.call({ op: "subscribe", room: "firehose" });
    // Stop reading: the kernel buffers fill, then the server's queue for it grows.
    const socket = (stalled.ws as unknown as { _socket: Socket })._socket;
    socket.pause();
    const payload = "x".repeat(32 * 1024);
    let published = 0;
    while (server.node.connectionCount() === 2 && published < 2000) {
      await server.node.publish("firehose", { n: published, payload });
      published++;
      // Let writes reach the sockets between publications.
      await new Promise(setImmediate);
    }
    assert.equal(server.node.connectionCount(), 1, `still connected after ${published} publications`);
    socket.resume();
    const closed = await stalled.waitClosed(10_000);
    assert.equal(closed.code, 4503);
    // The other subscriber was not affected.
    const last = await reader.seen((f) => f.op === "message" && (f.data as { n: number }).n === published - 1, "last");
    assert.equal(last.op, "message");
    reader.close();
  });
});

describe("memory an open connection keeps", () => {
  test("the upgrade request is let go once the client is connected", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const requests: WeakRef<IncomingMessage>[] = [];
    const server = await startNode(
      {},
      {
        authenticate: (request) => {
          requests.push(new WeakRef(request));
          return undefined;
        },
      },
    );
    try {
      const client = await server.client();
      assert.equal(requests.length, 1);
      // The connection is open and connected: nothing of it may hold the request and its headers.
      await waitUntil(
        "the upgrade request is garbage-collected",
        () => {
          gc();
          return requests[0]?.deref() === undefined;
        },
        5000,
      );
      assert.equal((await client.call({ op: "subscribe", room: "still-open" })).op, "subscribed");
    } finally {
      await server.close();
    }
  });
});
