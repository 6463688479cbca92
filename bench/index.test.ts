// The bench's command line: options checked before anything starts (exit 2
// with a message naming the option), --target, the ramp's schedule, which of
// repeated runs is reported, and secrets kept out of the recorded command.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseTargets, quietest, rampSchedule, redacted, runBench } from "./index.js";
import type { StepResult, TargetResult } from "./measure.js";
import { numberOption, UsageError } from "./usage.js";

/** Runs the bench in this process and captures what it writes. */
async function bench(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const write = { stdout: process.stdout.write, stderr: process.stderr.write };
  process.stdout.write = ((chunk: string | Uint8Array) => out.push(String(chunk)) > 0) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => err.push(String(chunk)) > 0) as typeof process.stderr.write;
  try {
    const code = await runBench(argv, "bench");
    return { code, stdout: out.join(""), stderr: err.join("") };
  } finally {
    process.stdout.write = write.stdout;
    process.stderr.write = write.stderr;
  }
}

describe("bench command line", () => {
  test("--help prints the usage and exits 0; no scenario prints it and exits 2", async () => {
    const help = await bench(["--help"]);
    assert.equal(help.code, 0);
    for (const name of ["chat", "ticker", "sparse", "direct", "idle"]) assert.ok(help.stdout.includes(name));
    assert.equal((await bench([])).code, 2);
  });

  // Each is refused by the checks that run before any server or connection is started.
  const refused: Array<[string[], RegExp]> = [
    [["nope"], /unknown scenario nope; one of: chat, ticker, sparse, direct, idle/],
    [["chat", "idle"], /unknown scenario chat idle/],
    [["chat", "--bogus"], /bogus/],
    [
      ["chat", "--users", "5"],
      /chat takes no --users; its options: instances, subscribers, rooms, publishers, rate, payload/,
    ],
    [["chat", "--rate", "fast"], /--rate must be a non-negative number, not fast/],
    [["chat", "--subscribers", "2.5"], /--subscribers must be a positive integer/],
    [["chat", "--instances", "0"], /--instances must be a positive integer/],
    [["chat", "--rate", "0"], /--rate must be above 0/],
    [["chat", "--payload", "23"], /--payload must be at least 24 bytes/],
    [
      ["chat", "--target", "nginx"],
      /--target must be crier, socketio, floor, several of them joined by commas, or both, not nginx/,
    ],
    [["direct", "--target", "floor"], /--target floor fans out to rooms only/],
    [["chat", "--target", "floor", "--processes", "2"], /--target floor runs one process per instance/],
    [["chat", "--socketio-adapter", "cluster"], /--socketio-adapter must be classic or sharded, not cluster/],
    [["chat", "--repeat", "2", "--ramp"], /--repeat applies to fixed-rate runs, not --ramp/],
    [["idle", "--ramp"], /idle has no rate to ramp/],
    [["chat", "--ramp", "--ramp-factor", "1"], /--ramp-factor must be above 1/],
    [["chat", "--api-key", "k"], /--api-key goes with --url/],
    [
      ["chat", "--url", "ws://127.0.0.1:9/ws", "--instances", "2"],
      /--instances is for runs on this machine, not --url/,
    ],
    [["chat", "--url", "http://127.0.0.1:9/ws"], /must start with ws:\/\/ or wss:\/\//],
  ];
  for (const [argv, message] of refused) {
    test(`refused with exit 2: ${argv.join(" ")}`, async () => {
      const result = await bench(argv);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, message);
      assert.match(result.stderr, /Run 'bench --help' for the options/);
    });
  }

  test("numberOption: absent takes the fallback; negative or not a number is refused naming the option", () => {
    assert.equal(numberOption(undefined, "rate", 7), 7);
    assert.equal(numberOption("0", "rate", 7), 0);
    assert.equal(numberOption("2.5", "rate", 7), 2.5);
    assert.throws(
      () => numberOption("-1", "rate", 7),
      (e: unknown) => e instanceof UsageError && /--rate/.test(e.message),
    );
    assert.throws(() => numberOption("Infinity", "rate", 7), UsageError);
  });

  test("--target: names, several joined by commas (each once), or both", () => {
    assert.deepEqual(parseTargets("both"), ["crier", "socketio"]);
    assert.deepEqual(parseTargets("floor, crier,floor"), ["floor", "crier"]);
    assert.throws(() => parseTargets("crier,"), UsageError);
  });

  test("secrets never reach the recorded command, in either form", () => {
    assert.deepEqual(redacted(["chat", "--api-key", "k1", "--token=t1", "--jwt-secret", "s1", "--rate", "5"]), [
      "chat",
      "--api-key",
      "***",
      "--token=***",
      "--jwt-secret",
      "***",
      "--rate",
      "5",
    ]);
  });
});

function step(rate: number, deliveredRatio: number, p99: number, otherCpuCores = 0): StepResult {
  return {
    rate,
    deliveredRatio,
    latency: { p50: 1, p90: 1, p99, p999: p99, max: p99, mean: 1 },
    otherCpuCores,
    stealCores: 0,
  } as StepResult;
}

describe("ramp schedule", () => {
  const criteria = { minDeliveredRatio: 0.999, maxP99Ms: 50 };

  test("up by the factor while steps pass, stopping at the first failure or past the maximum", () => {
    const next = rampSchedule(criteria, 2, 1000);
    assert.equal(next(step(100, 1, 10)), 200);
    assert.equal(next(step(200, 0.9995, 50)), 400, "at the limits is a pass");
    assert.equal(next(step(400, 1, 10)), 800);
    assert.equal(next(step(800, 1, 10)), undefined, "1600 is past --ramp-max");
    const failing = rampSchedule(criteria, 2, 1000);
    assert.equal(failing(step(100, 1, 10)), 200);
    assert.equal(failing(step(200, 0.99, 10)), undefined, "a failure after a pass ends the ramp");
    const slow = rampSchedule(criteria, 2, 1000);
    assert.equal(slow(step(100, 1, 10)), 200);
    assert.equal(slow(step(200, 1, 51)), undefined, "p99 over the limit is a failure");
  });

  test("a first step that fails goes down by the factor until one passes, then up; never below 1/s", () => {
    const next = rampSchedule(criteria, 2, 1000);
    assert.equal(next(step(100, 0.5, 10)), 50);
    assert.equal(next(step(50, 0.5, 10)), 25);
    assert.equal(next(step(25, 1, 10)), 50);
    assert.equal(next(step(50, 0.5, 10)), undefined);
    const floor = rampSchedule(criteria, 2, 1000);
    assert.equal(floor(step(3, 0.5, 10)), 1);
    assert.equal(floor(step(1, 0.5, 10)), undefined);
  });

  test("--repeat reports the run with the least other work on the machine", () => {
    const run = (other: number, idle?: number): TargetResult =>
      ({
        target: "crier",
        steps: idle === undefined ? [step(1, 1, 1, other)] : [],
        ...(idle === undefined ? {} : { idle: { otherCpuCores: idle } }),
      }) as TargetResult;
    const runs = [run(0.5), run(0.1), run(0.3)];
    assert.equal(quietest(runs), runs[1]);
    const idle = [run(0, 0.4), run(0, 0.2)];
    assert.equal(quietest(idle), idle[1]);
  });
});
