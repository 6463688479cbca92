// measure() end to end, tiny and bounded: a chat plan and an idle plan against
// one in-process crier on the memory broker, through the real generator (a
// worker thread). Nothing here asserts how fast anything is: only that every
// publication is counted and delivered, the numbers agree with each other,
// the ramp follows its schedule, and every connection is closed at the end.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startNode, type TestNode } from "../test/support/node.js";
import { waitUntil } from "../test/support/wait.js";
import { type Deployment, type MeasureOptions, measure } from "./measure.js";
import { findScenario } from "./scenarios/index.js";

describe("measure against one crier on the memory broker", () => {
  let server: TestNode;
  let deployment: Deployment;
  const lines: string[] = [];
  const options: MeasureOptions = {
    durationSeconds: 1,
    warmupSeconds: 0.2,
    workers: 1,
    concurrency: 10,
    timeoutMs: 10_000,
    log: (line) => lines.push(line),
  };

  before(async () => {
    server = await startNode();
    deployment = {
      target: "crier",
      name: "tiny",
      endpoints: [{ host: "127.0.0.1", port: server.port, tls: false }],
      // The server runs in this process: its CPU and memory are read from /proc like any other.
      servers: [{ name: "a", pid: process.pid }],
    };
  });
  after(() => server.close());

  test("chat, two steps of a ramp: every publication delivered to each member of its room, and counted", async () => {
    const chat = findScenario("chat");
    assert.ok(chat);
    const plan = chat.build({ instances: 1, subscribers: 20, rooms: 2, publishers: 2, rate: 20, payload: 100 });
    const result = await measure(deployment, plan, plan.conns, {
      ...options,
      nextRate: (previous) => (previous.rate === 20 ? 40 : undefined),
    });
    assert.deepEqual(result.connections, { wanted: 20, connected: 20, failed: 0 });
    assert.deepEqual([result.errors, result.closes], [0, {}]);
    assert.deepEqual(
      result.steps.map((step) => step.rate),
      [20, 40],
      "the ramp's schedule",
    );
    for (const step of result.steps) {
      assert.ok(step.publishes > 0, "publications went out");
      assert.equal(step.expected, step.publishes * 10, "each reaches the 10 members of its room");
      assert.equal(step.delivered, step.expected, "none lost");
      assert.equal(step.deliveredRatio, 1);
      assert.equal(step.unsent, 0);
      const { p50, p90, p99, p999, max } = step.latency;
      assert.ok(p50 > 0 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max, JSON.stringify(step.latency));
      assert.ok(Math.abs(step.publishesPerSecond * step.seconds - step.publishes) < 1e-6);
      assert.ok(Math.abs(step.deliveriesPerSecond * step.seconds - step.deliveries) < 1e-6);
      assert.deepEqual(
        step.servers.map((s) => s.name),
        ["a"],
      );
      assert.equal(step.redis, undefined, "no Redis of the bench's own");
    }
    assert.deepEqual(
      result.memory.map((m) => [m.name, m.connections]),
      [["a", 20]],
    );
    assert.ok(
      lines.some((line) => /^tiny: 20\/20 connections ready in [\d.]+ s$/.test(line)),
      lines.join("\n"),
    );
    await waitUntil("every connection is closed", () => server.node.connectionCount() === 0);
  });

  test("idle: connections only, CPU over a quiet window, no steps", async () => {
    const idle = findScenario("idle");
    assert.ok(idle);
    const plan = idle.build({ instances: 1, connections: 5, rooms: 1 });
    const result = await measure(deployment, plan, plan.conns, options);
    assert.equal(result.connections.connected, 5);
    assert.deepEqual(result.steps, []);
    assert.ok(result.idle !== undefined && result.idle.seconds > 0);
    assert.deepEqual(
      result.idle.servers.map((s) => s.name),
      ["a"],
    );
    assert.deepEqual(
      result.memory.map((m) => [m.name, m.connections]),
      [["a", 5]],
    );
    await waitUntil("every connection is closed", () => server.node.connectionCount() === 0);
  });

  test("a deployment nobody listens on: no connection could be set up, said before any load", async () => {
    const idle = findScenario("idle");
    assert.ok(idle);
    const plan = idle.build({ instances: 1, connections: 2, rooms: 0 });
    const closed = await startNode();
    const port = closed.port;
    await closed.close();
    await assert.rejects(
      measure({ ...deployment, endpoints: [{ host: "127.0.0.1", port, tls: false }] }, plan, plan.conns, options),
      /tiny: no connection could be set up/,
    );
  });
});
