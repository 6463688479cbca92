// `bench scale`: how crier's cost grows with instances and with the engine.
// The same total load (subscribers in rooms, publishers, a rate) runs on 1, 2,
// 4 and 8 crier instances over each engine (one Redis, a 3-master Redis
// Cluster), measuring CPU per instance and per engine node. With --ramp it then
// finds, for each engine, the highest rate that still delivers everything in
// time (the usual ramp criteria) at the largest instance count. Everything runs
// on 127.0.0.1 and is bounded by the options.

import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ENGINE_NAMES, type EngineName } from "./cluster/redis.js";
import { machineInfo } from "./machine.js";
import type { StepResult } from "./measure.js";
import { runTarget } from "./run.js";
import { roomsPlan } from "./scenarios/rooms.js";
import { numberOption as number, UsageError } from "./usage.js";

export const SCALE_ABOUT =
  "the same load on 1, 2, 4 and 8 instances over each engine: CPU per instance and per engine node; " +
  "--ramp adds the highest rate each engine sustains";

const OPTIONS = {
  engine: { type: "string", default: "redis,redis-cluster" },
  counts: { type: "string", default: "1,2,4,8" },
  subscribers: { type: "string", default: "800" },
  rooms: { type: "string", default: "40" },
  rate: { type: "string", default: "200" },
  payload: { type: "string", default: "100" },
  duration: { type: "string", default: "5" },
  warmup: { type: "string", default: "2" },
  workers: { type: "string", default: "2" },
  ramp: { type: "boolean", default: false },
  "ramp-factor": { type: "string", default: "1.5" },
  "ramp-max": { type: "string", default: "20000" },
  "max-p99": { type: "string", default: "50" },
  "min-delivered": { type: "string", default: "99.9" },
} as const;

interface Row {
  engine: EngineName;
  instances: number;
  step: StepResult;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? "").length)));
  const line = (cells: string[]): string => cells.map((cell, i) => cell.padStart(widths[i] ?? 0)).join("  ");
  return [line(header), ...rows.map(line)].join("\n");
}

function cores(n: number): string {
  return n.toFixed(2);
}

export async function runScale(argv: string[], invokedAs: string, log: (line: string) => void): Promise<number> {
  const { values } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: false, strict: true });
  const engines = values.engine.split(",").map((name) => {
    const engine = ENGINE_NAMES.find((candidate) => candidate === name.trim());
    if (engine === undefined)
      throw new UsageError(`--engine takes ${ENGINE_NAMES.join(", ")} (comma-separated), not ${name}`);
    return engine;
  });
  const counts = values.counts.split(",").map((text) => {
    const count = number(text, "counts", 1);
    if (!Number.isInteger(count) || count < 1 || count > 16)
      throw new UsageError("--counts are instance counts of 1 to 16");
    return count;
  });
  const subscribers = number(values.subscribers, "subscribers", 800);
  const rooms = number(values.rooms, "rooms", 40);
  const shape = { subscribers, rooms, publishers: rooms, payload: number(values.payload, "payload", 100) };
  const durationSeconds = number(values.duration, "duration", 5);
  const warmupSeconds = number(values.warmup, "warmup", 2);
  const workers = Math.max(1, Math.round(number(values.workers, "workers", 2)));
  const minDelivered = number(values["min-delivered"], "min-delivered", 99.9) / 100;
  const maxP99 = number(values["max-p99"], "max-p99", 50);
  const logDir = mkdtempSync(join(tmpdir(), "crier-bench-scale-"));
  // What the machine was doing when the run began: latencies on a busy machine are its noise.
  const startedAt = new Date().toISOString();
  const startLoad = (loadavg()[0] ?? 0).toFixed(2);
  const options = (engine: EngineName) => ({
    durationSeconds,
    warmupSeconds,
    workers,
    processes: 1,
    logDir,
    engine,
    socketioAdapter: "classic" as const,
    log,
  });
  const rows: Row[] = [];
  const best: Array<{ engine: EngineName; instances: number; rate: number | undefined; step: StepResult | undefined }> =
    [];
  try {
    for (const engine of engines) {
      for (const instances of counts) {
        const plan = roomsPlan(
          { ...shape, instances, rate: number(values.rate, "rate", 200) },
          (members) => `${instances} instances, ${subscribers} subscribers in ${rooms} rooms of ${members}`,
        );
        log(`scale: ${engine}, ${plan.summary}, ${plan.rate} publishes/s`);
        const result = await runTarget("crier", plan, options(engine));
        const step = result.steps[0];
        if (step !== undefined) rows.push({ engine, instances, step });
      }
      if (values.ramp) {
        const instances = Math.max(...counts);
        const factor = number(values["ramp-factor"], "ramp-factor", 1.5);
        const max = number(values["ramp-max"], "ramp-max", 20_000);
        const plan = roomsPlan(
          { ...shape, instances, rate: number(values.rate, "rate", 200) },
          (members) => `${instances} instances, ${subscribers} subscribers in ${rooms} rooms of ${members}`,
        );
        log(`scale: ${engine} ramp from ${plan.rate} publishes/s on ${instances} instances`);
        const passes = (s: StepResult): boolean => s.deliveredRatio >= minDelivered && s.latency.p99 <= maxP99;
        // A failed step runs once more at the same rate: one burst of other work on a
        // shared machine should not end the ramp; two failures in a row do.
        let retried = false;
        const result = await runTarget("crier", plan, {
          ...options(engine),
          nextRate: (previous) => {
            if (!passes(previous)) {
              if (retried) return undefined;
              retried = true;
              return previous.rate;
            }
            retried = false;
            const next = Math.round(previous.rate * factor);
            return next <= max ? next : undefined;
          },
        });
        const passing = result.steps.filter(passes);
        const top = passing.at(-1);
        best.push({ engine, instances, rate: top?.rate, step: top });
      }
    }
  } finally {
    rmSync(logDir, { recursive: true, force: true });
  }

  const out: string[] = [];
  out.push(
    `scale: ${subscribers} subscribers in ${rooms} rooms, ${rooms} publishers, ${shape.payload}-byte payloads; ` +
      `${durationSeconds} s measured after ${warmupSeconds} s warm-up per run`,
  );
  out.push(`$ ${invokedAs} ${argv.join(" ")}`);
  const m = machineInfo();
  out.push(
    `${startedAt}; ${m.cores} cores (${m.cpuModel}), ${m.memoryGiB} GiB, Node ${m.node}, Redis ${m.redis}; ` +
      `load average ${startLoad} at the start`,
  );
  out.push("");
  out.push(
    table(
      [
        "engine",
        "instances",
        "pub/s",
        "deliveries/s",
        "delivered %",
        "p99 ms",
        "crier CPU",
        "per instance",
        "µs/delivery",
        "engine CPU",
        "per engine node",
      ],
      rows.map(({ engine, instances, step }) => [
        engine,
        String(instances),
        step.publishesPerSecond.toFixed(0),
        step.deliveriesPerSecond.toFixed(0),
        (step.deliveredRatio * 100).toFixed(3),
        step.latency.p99.toFixed(1),
        cores(step.serverCpuCores),
        cores(step.serverCpuCores / Math.max(1, step.servers.length)),
        step.serverUsPerDelivery.toFixed(1),
        cores(step.redis?.cpuCores ?? 0),
        (step.engineNodes ?? []).map((node) => cores(node.cpuCores)).join(" "),
      ]),
    ),
  );
  if (best.length > 0) {
    out.push("");
    out.push(
      `highest rate delivered in full with p99 <= ${maxP99} ms (ramp ×${values["ramp-factor"]} per step, a failed step run once more):`,
    );
    out.push(
      table(
        ["engine", "instances", "pub/s", "deliveries/s", "p99 ms", "crier CPU", "engine CPU", "per engine node"],
        best.map(({ engine, instances, rate, step }) => [
          engine,
          String(instances),
          rate === undefined ? "none passed" : String(rate),
          step === undefined ? "-" : step.deliveriesPerSecond.toFixed(0),
          step === undefined ? "-" : step.latency.p99.toFixed(1),
          step === undefined ? "-" : cores(step.serverCpuCores),
          step === undefined ? "-" : cores(step.redis?.cpuCores ?? 0),
          step === undefined ? "-" : (step.engineNodes ?? []).map((node) => cores(node.cpuCores)).join(" "),
        ]),
      ),
    );
  }
  process.stdout.write(`\n${out.join("\n")}\n`);
  return 0;
}
