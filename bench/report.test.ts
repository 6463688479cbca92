// The bench's report, from made-up results: the rows and columns of each kind
// of table, the crier ÷ socket.io ratios and where they are left blank, cells
// for what was not measured, the notes on what went wrong, and the Markdown
// form that is committed to docs/benchmarks.md.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ProcessCost } from "./costs.js";
import type { StepResult, TargetResult } from "./measure.js";
import { type BenchReport, renderMarkdown, renderText } from "./report.js";

const MACHINE = {
  cores: 2,
  cpuModel: "Test CPU",
  memoryGiB: 4,
  kernel: "6.1",
  node: "v20.0.0",
  redis: "7.0.0",
  socketio: "4.8.0",
  socketioRedisAdapter: "8.3.0",
};

function cost(name: string, cpuCores: number, rssBytes = 100 * 2 ** 20): ProcessCost {
  return { name, pid: 1, cpuCores, cpuSeconds: cpuCores * 10, systemSeconds: cpuCores * 5, rssBytes };
}

function step(overrides: Partial<StepResult> = {}): StepResult {
  return {
    rate: 100,
    seconds: 10,
    publishes: 1000,
    publishesPerSecond: 100,
    deliveries: 20_000,
    deliveriesPerSecond: 2000,
    expected: 20_000,
    delivered: 20_000,
    deliveredRatio: 1,
    latency: { p50: 1.234, p90: 2, p99: 12.345, p999: 20, max: 30, mean: 1.5 },
    servers: [cost("a", 0.5), cost("b", 0.5)],
    serverCpuCores: 1,
    serverUsPerDelivery: 50,
    redis: cost("redis", 0.1),
    redisUsPerDelivery: 5,
    generatorCpuCores: 0.3,
    otherCpuCores: 0,
    stealCores: 0,
    skipped: 0,
    unsent: 0,
    ...overrides,
  };
}

function result(target: TargetResult["target"], overrides: Partial<TargetResult> = {}): TargetResult {
  return {
    target,
    connections: { wanted: 10, connected: 10, failed: 0 },
    setupSeconds: 1.5,
    memory: [
      {
        name: "a",
        connections: 5,
        rssBeforeBytes: 50 * 2 ** 20,
        rssAfterBytes: 55 * 2 ** 20,
        bytesPerConnection: 2 ** 20,
      },
      {
        name: "b",
        connections: 5,
        rssBeforeBytes: 50 * 2 ** 20,
        rssAfterBytes: 55 * 2 ** 20,
        bytesPerConnection: 2 ** 20,
      },
    ],
    steps: [step()],
    errors: 0,
    errorSamples: [],
    closes: {},
    ...overrides,
  };
}

function report(results: TargetResult[], overrides: Partial<BenchReport> = {}): BenchReport {
  return {
    scenario: "chat",
    summary: "2 instances, 10 subscribers",
    command: "npm run bench -- chat",
    date: "2026-01-01",
    machine: MACHINE,
    options: { socketioAdapter: "sharded" },
    results,
    ...overrides,
  };
}

/** The table row that starts with `label`, split into its cells. */
function row(text: string, label: string): string[] {
  const line = text.split("\n").find((l) => l.startsWith(`${label}  `) || l.startsWith(`${label} `));
  assert.ok(line !== undefined, `a row '${label}' in:\n${text}`);
  return line
    .slice(label.length)
    .trim()
    .split(/\s{2,}/);
}

describe("renderText", () => {
  test("a step against crier and socket.io: header, one column each, and crier ÷ socket.io where it means something", () => {
    const crier = result("crier");
    const socketio = result("socketio", {
      steps: [
        step({ deliveriesPerSecond: 1000, serverUsPerDelivery: 200, latency: { ...step().latency, p99: 24.69 } }),
      ],
    });
    const text = renderText(report([crier, socketio]));
    const lines = text.split("\n");
    assert.equal(lines[0], "chat: 2 instances, 10 subscribers");
    assert.equal(
      lines[1],
      "2026-01-01 · 2 × Test CPU · Node v20.0.0 · Redis 7.0.0 · socket.io 4.8.0 + redis-adapter 8.3.0 (sharded)",
    );
    assert.equal(lines[2], "$ npm run bench -- chat");
    assert.deepEqual(lines[4]?.trim().split(/\s{2,}/), ["crier", "socket.io", "crier ÷ socket.io"]);
    assert.deepEqual(row(text, "deliveries/s"), ["2,000", "1,000", "2.00"]);
    assert.deepEqual(row(text, "server CPU µs/delivery"), ["50.00", "200.00", "0.25"]);
    assert.deepEqual(row(text, "latency p99 ms"), ["12.3", "24.7", "0.50"]);
    assert.deepEqual(row(text, "latency p50 ms"), ["1.23", "1.23", "1.00"]);
    // Counts and percentages that are not costs get no ratio.
    assert.deepEqual(row(text, "publications/s"), ["100", "100"]);
    assert.deepEqual(row(text, "delivered %"), ["100.000", "100.000"]);
    assert.deepEqual(row(text, "  per instance"), ["a 0.50 b 0.50", "a 0.50 b 0.50"]);
    assert.deepEqual(row(text, "RSS KB/connection"), ["1024.0", "1024.0", "1.00"]);
    assert.ok(!text.includes("expect noise"), "no notes for a clean run");
  });

  test("a target without Redis shows '-' and no ratio there; lost messages are counted", () => {
    const crier = result("crier", {
      steps: [step({ redis: undefined, redisUsPerDelivery: undefined, delivered: 19_990, deliveredRatio: 0.9995 })],
    });
    const text = renderText(report([crier, result("socketio")]));
    // No ratio cell: the row ends after socket.io's.
    assert.deepEqual(row(text, "Redis CPU, cores"), ["-", "0.10"]);
    assert.deepEqual(row(text, "lost (expected − delivered)"), ["10", "0"]);
    assert.deepEqual(row(text, "delivered %"), ["99.950", "100.000"]);
  });

  test("what went wrong is said in words under the table", () => {
    const troubled = result("crier", {
      connections: { wanted: 10, connected: 8, failed: 2, firstError: "ECONNREFUSED" },
      closes: { "4503": 3 },
      errors: 2,
      errorSamples: ["boom", "bang"],
      steps: [step({ skipped: 7, unsent: 4, otherCpuCores: 0.2, stealCores: 0.1 })],
    });
    const notes = renderText(report([troubled])).split("\n");
    for (const note of [
      "crier: 2 connections failed to set up (ECONNREFUSED)",
      "crier: connections closed by the server: 3 × 4503",
      "crier: 2 errors, e.g. boom | bang",
      "crier: the generator fell behind and skipped 7 publications",
      "crier: 4 publications could not go out (their connection was gone)",
      "crier: other processes used 0.30 cores during the measurement: expect noise",
    ]) {
      assert.ok(notes.includes(note), `note '${note}' in:\n${notes.join("\n")}`);
    }
  });

  test("an external deployment: one 'deployment' column, no server rows without --pid, and why", () => {
    const external = result("crier", { memory: [], steps: [step({ servers: [], redis: undefined, unsent: 1 })] });
    const text = renderText(
      report([external], {
        external: {
          urls: ["ws://127.0.0.1:1/ws"],
          publishVia: "http-api",
          auth: "anonymous",
          roomPrefix: "b:",
          pids: [],
        },
      }),
    );
    const lines = text.split("\n");
    assert.equal(lines[1], "2026-01-01 · generator: 2 × Test CPU · Node v20.0.0");
    assert.equal(lines[2], "deployment: ws://127.0.0.1:1/ws · publishing through the HTTP API");
    assert.deepEqual(lines[5]?.trim().split(/\s{2,}/), ["deployment"]);
    assert.ok(!text.includes("server CPU, cores"), "no server rows");
    assert.ok(!text.includes("Redis CPU"), "no Redis rows");
    assert.ok(lines.some((l) => l.startsWith("server CPU and memory: not measured for an external target")));
    assert.ok(lines.includes("latency includes the HTTP API request of each publication"));
    assert.ok(lines.includes("deployment: 1 publications could not go out (too many HTTP requests pending)"));
  });

  test("idle: connections, set-up time, memory per instance and idle CPU", () => {
    const idle = (target: TargetResult["target"], cores: number): TargetResult =>
      result(target, {
        steps: [],
        idle: { seconds: 10, servers: [cost("a", cores), cost("b", cores)], generatorCpuCores: 0, otherCpuCores: 0 },
      });
    const text = renderText(report([idle("crier", 0.01), idle("socketio", 0.04)]));
    assert.deepEqual(row(text, "connections"), ["10", "10"]);
    assert.deepEqual(row(text, "set-up seconds"), ["1.5", "1.5", "1.00"]);
    assert.deepEqual(row(text, "a: RSS MB before → after (median)"), ["50 → 55", "50 → 55"]);
    assert.deepEqual(row(text, "idle server CPU, cores"), ["0.020", "0.080", "0.25"]);
    assert.ok(!text.includes("latency"), "no step rows");
  });

  test("ramp: a table per target with pass/fail per step, then the best rate of each", () => {
    const ramp = { minDeliveredRatio: 0.999, maxP99Ms: 50 };
    const crier = result("crier", {
      steps: [step({ rate: 100 }), step({ rate: 200 }), step({ rate: 400, latency: { ...step().latency, p99: 80 } })],
    });
    const socketio = result("socketio", { steps: [step({ rate: 100, deliveredRatio: 0.5 })] });
    const text = renderText(report([crier, socketio], { ramp: { ...ramp, best: { crier: 200, socketio: null } } }));
    const passes = text
      .split("\n")
      .filter((l) => /^\s*[\d,]+\s/.test(l))
      .map((l) => l.trim().split(/\s+/).at(-1));
    assert.deepEqual(passes, ["yes", "yes", "no", "no"]);
    assert.deepEqual(row(text, "highest rate with ≥ 99.9% delivered and p99 ≤ 50 ms"), ["200", "none"]);
    assert.ok(text.includes("(for the rate rows a ratio above 1 means crier sustains more)"));
  });

  test("with --repeat, every run is listed and the one shown is marked", () => {
    const quiet = result("crier");
    const noisy = result("crier", { steps: [step({ otherCpuCores: 0.5 })] });
    const text = renderText(report([quiet], { runs: [noisy, quiet] }));
    assert.ok(text.includes("   crier     50.00 µs/delivery, p99 12.3 ms, other CPU 0.50 cores"));
    assert.ok(text.includes(" * crier     50.00 µs/delivery, p99 12.3 ms, other CPU 0.00 cores"));
  });
});

describe("renderMarkdown", () => {
  test("a section with the machine, the command in a code block, and the text report's table", () => {
    const r = report([result("crier"), result("socketio")]);
    const markdown = renderMarkdown(r);
    const lines = markdown.split("\n");
    assert.equal(lines[0], "## chat: 2 instances, 10 subscribers");
    assert.equal(
      lines[2],
      "2026-01-01; 2 cores (Test CPU), 4 GiB, Linux 6.1, Node v20.0.0, Redis 7.0.0, socket.io 4.8.0 with @socket.io/redis-adapter 8.3.0.",
    );
    assert.deepEqual(lines.slice(4, 7), ["```", "$ npm run bench -- chat", "```"]);
    // The table is the text report without its four header lines.
    const table = renderText(r).split("\n").slice(4).join("\n");
    assert.ok(markdown.includes(`\`\`\`\n${table}\n\`\`\``));
  });
});
