// The bench past one process's open-file limit: its generator spreads the
// connections over child processes when they do not fit in one, and a server
// instance made of several processes is measured as the sum of its process
// tree. Small numbers; nothing here asserts how fast anything is.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { GeneratorPool } from "../../bench/generator/pool.js";
import type { ConnSpec } from "../../bench/generator/spec.js";
import { descendants, sample, sampleTree } from "../../bench/proc.js";
import { track } from "../support/children.js";
import { api, type ConfigFile, type CrierInstance, startCrier, writeConfig } from "../support/crier.js";
import { waitUntil } from "../support/wait.js";

let crier: CrierInstance;
let config: ConfigFile;

before(async () => {
  // The generator opens its connections from one address as fast as it can.
  config = await writeConfig({ limits: { connectionsPerSecondPerIp: 100_000, connectionsPerSecond: 100_000 } });
  crier = await startCrier({ args: ["--config", config.path] });
});

after(async () => {
  await crier?.stop();
  await config?.remove();
});

async function openConnections(): Promise<number> {
  const info = await api(crier, "/api/info");
  const nodes = (info.body as { nodes?: { connections?: number }[] }).nodes ?? [];
  return nodes.reduce((total, node) => total + (node.connections ?? 0), 0);
}

/** A generator pool of `workers` against the test's crier, as if one process could open `fdLimit` files. */
function startPool(conns: ConnSpec[], workers: number, fdLimit: number): ReturnType<typeof GeneratorPool.start> {
  return GeneratorPool.start({
    target: "crier",
    endpoints: [{ host: "127.0.0.1", port: Number(new URL(crier.url).port), tls: false }],
    conns,
    publishers: [],
    workers,
    fdLimit,
    payloadBytes: 100,
    concurrency: 8,
    timeoutMs: 20_000,
  });
}

describe("bench generator", () => {
  test("spreads connections over child processes when one process may not open them all", async () => {
    const conns: ConnSpec[] = Array.from({ length: 120 }, (_, i) => ({ instance: 0, rooms: [`room-${i % 3}`] }));
    // 250 files per process, 200 kept for the process itself: 50 connections each, so 3 processes.
    const { pool, ready } = await startPool(conns, 1, 250);
    let pids: number[] = [];
    try {
      assert.deepEqual(ready, { type: "ready", connected: 120, failed: 0 });
      pids = pool.pids();
      assert.equal(pids.length, 3);
      assert.ok(!pids.includes(process.pid));
      assert.equal(await openConnections(), 120);
    } finally {
      await pool.close();
    }
    await waitUntil("the server has no connection left", async () => (await openConnections()) === 0, 10_000);
    assert.deepEqual(pool.pids(), []);
    for (const pid of pids) assert.equal(sample(pid), undefined, `generator process ${pid} is gone`);
  });

  test("stays in threads of this process when the connections fit", async () => {
    const conns: ConnSpec[] = Array.from({ length: 10 }, () => ({ instance: 0, rooms: ["room"] }));
    const { pool, ready } = await startPool(conns, 2, 1000);
    try {
      assert.equal(ready.connected, 10);
      assert.deepEqual(pool.pids(), []);
    } finally {
      await pool.close();
    }
  });
});

describe("process tree sampling", () => {
  test("sums a process and every descendant", async () => {
    // A shell whose child is a sleep: two levels, as crier's primary and its workers.
    const parent = spawn("sh", ["-c", "sleep 30 & wait"], { stdio: "ignore" });
    track(parent);
    const pid = parent.pid;
    assert.ok(pid !== undefined);
    let child: number | undefined;
    try {
      await waitUntil("the shell has started its child", () => descendants(pid).length === 1);
      [child] = descendants(pid);
      assert.ok(child !== undefined);
      const own = sample(pid);
      const tree = sampleTree(pid);
      const childSample = sample(child);
      assert.ok(own !== undefined && tree !== undefined && childSample !== undefined);
      assert.ok(tree.rssBytes > own.rssBytes, "the tree's RSS includes the child's");
      assert.ok(descendants(process.pid).includes(child), "descendants reach grandchildren");
    } finally {
      if (child !== undefined) process.kill(child, "SIGKILL");
      parent.kill("SIGKILL");
    }
  });

  test("is undefined for a process that is gone", () => {
    assert.equal(sampleTree(2 ** 22 + 1), undefined);
  });
});
