// `crier serve --workers 2`: two processes serve one port, share rooms through
// Redis, and stop together on SIGTERM.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { ServerFrame } from "crier-protocol";
import { type CrierInstance, runCli, startCrier } from "../support/crier.js";
import { type RedisProcess, startRedis } from "../support/redis.js";
import { TestClient } from "../support/ws-client.js";

describe("crier serve --workers", () => {
  let redis: RedisProcess;
  let crier: CrierInstance;

  before(async () => {
    redis = await startRedis();
    // Three processes compile and start at once: on a loaded machine that takes a while.
    crier = await startCrier({
      args: ["--redis", redis.url, "--workers", "2", "--node-id", "host"],
      readyTimeoutMs: 60_000,
    });
    // The first worker's "listening" line started us; wait for the second's.
    await crier.waitForLog((entry) => entry.msg === "crier listening" && entry.node === "host-w1", 60_000);
    await crier.waitForLog((entry) => entry.msg === "crier listening" && entry.node === "host-w0", 60_000);
  });

  after(async () => {
    await crier?.stop();
    await redis?.stop();
  });

  test("connections are spread over the workers, which share rooms; SIGTERM closes them all with 4500", async () => {
    const clients: TestClient[] = [];
    const nodes = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const client = await TestClient.open(crier.url);
      const connected = await client.call({ op: "connect" });
      assert.equal(connected.op, "connected");
      if (connected.op === "connected") nodes.add(connected.node);
      clients.push(client);
    }
    assert.deepEqual([...nodes].sort(), ["host-w0", "host-w1"]);
    for (const client of clients) await client.call({ op: "subscribe", room: "shared" });
    const publisher = clients[0];
    assert.ok(publisher !== undefined);
    await publisher.call({ op: "publish", room: "shared", data: "across workers" });
    const isMessage = (frame: ServerFrame): boolean => frame.op === "message" && frame.data === "across workers";
    for (const client of clients) await client.seen(isMessage, "the publication");

    const closed = clients.map((client) => client.waitClosed(10_000));
    const exit = crier.stop();
    for (const status of await Promise.all(closed)) assert.equal(status.code, 4500);
    await exit;
    assert.deepEqual(await crier.exited, { code: 0, signal: null }, "the primary exits 0 once every worker has");
  });

  test("more than one worker without redis is refused, naming the key", async () => {
    const result = await runCli(["serve", "--workers", "2", "--port", "0"]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /"workers".*needs redis/);
  });
});

test("workers that keep failing to start (port taken) make the primary stop with exit code 1", async () => {
  const redis = await startRedis();
  const blocker = await startCrier();
  try {
    // Three rounds of two workers starting and failing: a deadline for a hang, not a speed test.
    const result = await runCli(["serve", "--workers", "2", "--redis", redis.url, "--port", String(blocker.port)], {
      timeoutMs: 90_000,
    });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /keep failing to start/);
  } finally {
    await blocker.stop();
    await redis.stop();
  }
});
