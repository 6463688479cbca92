// A window's costs from two sets of samples: CPU cores as CPU seconds over
// wall seconds, what else ran on the machine, and zeros (not NaN) where a
// process could not be read.

import assert from "node:assert/strict";
import { test } from "node:test";
import { costsBetween, type Samples } from "./costs.js";
import type { ProcSample } from "./proc.js";

const proc = (cpuSeconds: number, at: number, systemSeconds = 0, rssBytes = 1000): ProcSample => ({
  cpuSeconds,
  systemSeconds,
  rssBytes,
  at,
});

function samples(
  at: number,
  cpu: { a: number; b: number; redis: number; generator: number; busy: number; steal: number },
): Samples {
  return {
    servers: [
      { name: "a", pid: 11, sample: proc(cpu.a, at, cpu.a / 4, 2000 + at) },
      { name: "b", pid: 12, sample: proc(cpu.b, at) },
    ],
    engine: [{ pid: 13, sample: proc(cpu.redis, at) }],
    generator: proc(cpu.generator, at),
    machine: { busySeconds: cpu.busy, stealSeconds: cpu.steal, at },
  };
}

test("cores are CPU seconds per wall second; the rest of the machine is what the measured processes did not use", () => {
  // 10 s window: a used 5 s (1.25 of it in the kernel), b 2 s, Redis 1 s, the generator 3 s; the machine 14 s.
  const before = samples(1_000, { a: 10, b: 10, redis: 10, generator: 10, busy: 100, steal: 1 });
  const after = samples(11_000, { a: 15, b: 12, redis: 11, generator: 13, busy: 114, steal: 3 });
  const costs = costsBetween(before, after);
  assert.equal(costs.seconds, 10);
  assert.deepEqual(costs.servers, [
    { name: "a", pid: 11, cpuCores: 0.5, cpuSeconds: 5, systemSeconds: 1.25, rssBytes: 13_000 },
    { name: "b", pid: 12, cpuCores: 0.2, cpuSeconds: 2, systemSeconds: 0, rssBytes: 1000 },
  ]);
  assert.deepEqual(costs.redis, {
    name: "redis",
    pid: 13,
    cpuCores: 0.1,
    cpuSeconds: 1,
    systemSeconds: 0,
    rssBytes: 1000,
  });
  assert.equal(costs.generator.cores, 0.3);
  // 1.4 cores busy, 1.1 of them ours: 0.3 other; 0.2 stolen.
  assert.ok(Math.abs(costs.otherCores - 0.3) < 1e-9, String(costs.otherCores));
  assert.ok(Math.abs(costs.stealCores - 0.2) < 1e-9, String(costs.stealCores));
});

test("other work is never negative, and a process gone or never started costs zero", () => {
  const before = samples(0, { a: 0, b: 0, redis: 0, generator: 0, busy: 0, steal: 0 });
  const after = samples(1_000, { a: 1, b: 1, redis: 0, generator: 0, busy: 1, steal: 0 });
  assert.equal(
    costsBetween(before, after).otherCores,
    0,
    "the machine counted less than our processes (sampling skew)",
  );

  const gone: Samples = {
    ...after,
    servers: [{ name: "a", pid: 11, sample: undefined }],
    engine: [],
    machine: undefined,
  };
  const costs = costsBetween({ ...before, servers: [{ name: "a", pid: 11, sample: proc(0, 0) }], engine: [] }, gone);
  assert.deepEqual(costs.servers, [{ name: "a", pid: 11, cpuCores: 0, cpuSeconds: 0, systemSeconds: 0, rssBytes: 0 }]);
  assert.equal(costs.redis, undefined, "no Redis of ours: no Redis cost");
  assert.deepEqual([costs.otherCores, costs.stealCores], [0, 0], "no machine sample: nothing known of other work");
});
