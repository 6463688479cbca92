// What a worker records (counts and latencies per measurement window) and how
// the orchestrator turns the workers' histograms into the report's percentiles.

import assert from "node:assert/strict";
import { test } from "node:test";
import { latencyOf } from "../measure.js";
import { DeliveryRecorder, MAX_LATENCY_US } from "./recorder.js";

const A = "A".charCodeAt(0);
const B = "B".charCodeAt(0);

/** Within the histogram's precision (3 significant digits). */
function near(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= expected * 0.001 + 1e-9, `${what}: ${actual}, expected about ${expected}`);
}

test("a window counts every payload while open, and only its own tag's payloads as delivered, even after it closes", () => {
  const recorder = new DeliveryRecorder();
  recorder.payload(A, 0, 10);
  assert.deepEqual([recorder.windowDeliveries, recorder.delivered], [0, 0], "no window yet: nothing counted");
  recorder.begin("A");
  recorder.payload(A, 0, 10);
  recorder.payload(B, 0, 10);
  assert.deepEqual([recorder.windowDeliveries, recorder.delivered], [2, 1]);
  recorder.end();
  // Draining: the window's own publications still count as delivered, other traffic no more.
  recorder.payload(A, 0, 10);
  recorder.payload(B, 0, 10);
  assert.deepEqual([recorder.windowDeliveries, recorder.delivered], [2, 2]);
  // A new window starts from zero, histogram included.
  recorder.begin("B");
  assert.deepEqual([recorder.windowDeliveries, recorder.delivered], [0, 0]);
  assert.equal(latencyOf([recorder.encodedHistogram()]).max, 0);
});

test("latencies: percentiles in ms of µs recordings, merged over workers; sub-µs and overlong values clamped", () => {
  // Worker 1 records 1..500 µs, worker 2 501..1000 µs: merged, 1..1000 µs uniformly.
  const workers = [new DeliveryRecorder(), new DeliveryRecorder()];
  for (const worker of workers) worker.begin("A");
  for (let us = 1; us <= 1000; us++) workers[us <= 500 ? 0 : 1]?.payload(A, 1_000_000, 1_000_000 + us);
  const latency = latencyOf(workers.map((w) => w.encodedHistogram()));
  near(latency.p50, 0.5, "p50");
  near(latency.p90, 0.9, "p90");
  near(latency.p99, 0.99, "p99");
  near(latency.p999, 0.999, "p99.9");
  near(latency.max, 1, "max");
  near(latency.mean, 0.5005, "mean");

  const clamped = new DeliveryRecorder();
  clamped.begin("A");
  clamped.payload(A, 100, 100.2);
  assert.equal(latencyOf([clamped.encodedHistogram()]).max, 0.001, "below 1 µs counts as 1 µs");
  clamped.payload(A, 0, MAX_LATENCY_US * 10);
  near(latencyOf([clamped.encodedHistogram()]).max, MAX_LATENCY_US / 1000, "clamped to the histogram's range");
});

test("no recordings: every latency is 0, not NaN", () => {
  assert.deepEqual(latencyOf([]), { p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0 });
  assert.deepEqual(latencyOf([new DeliveryRecorder().encodedHistogram()]), {
    p50: 0,
    p90: 0,
    p99: 0,
    p999: 0,
    max: 0,
    mean: 0,
  });
});
