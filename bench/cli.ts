// `npm run bench -- <scenario> [options]`: runs a scenario against crier and
// the Socket.IO peer one after the other, prints one table with both side by
// side, and writes JSON (--json) or appends Markdown (--out) on request.
// Everything targets 127.0.0.1, every run is bounded, and every process the
// bench starts is killed when it ends, whatever the reason.

import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { killAll } from "./cluster/processes.js";
import type { TargetName } from "./generator/spec.js";
import { machineInfo } from "./machine.js";
import { openFileLimit } from "./proc.js";
import { type BenchReport, type RampCriteria, renderMarkdown, renderText } from "./report.js";
import { type RunOptions, runTarget, type StepResult, type TargetResult } from "./run.js";
import { findScenario, SCENARIOS } from "./scenarios/index.js";
import type { Plan } from "./scenarios/scenario.js";

const SCENARIO_OPTIONS = [
  "instances",
  "subscribers",
  "rooms",
  "publishers",
  "members",
  "users",
  "senders",
  "connections",
  "rate",
  "payload",
] as const;

const OPTIONS = {
  target: { type: "string", default: "both" },
  duration: { type: "string" },
  warmup: { type: "string" },
  workers: { type: "string", default: "2" },
  ramp: { type: "boolean", default: false },
  repeat: { type: "string", default: "1" },
  "ramp-start": { type: "string" },
  "ramp-factor": { type: "string", default: "1.5" },
  "ramp-max": { type: "string", default: "100000" },
  "max-p99": { type: "string", default: "50" },
  "min-delivered": { type: "string", default: "99.9" },
  "socketio-adapter": { type: "string", default: "classic" },
  json: { type: "string" },
  out: { type: "string" },
  "cpu-prof": { type: "string" },
  "keep-logs": { type: "boolean", default: false },
  help: { type: "boolean", default: false },
  ...Object.fromEntries(SCENARIO_OPTIONS.map((name) => [name, { type: "string" }])),
} as const;

function usage(): string {
  return [
    "Usage: npm run bench -- <scenario> [options]",
    "",
    "Scenarios:",
    ...SCENARIOS.map(
      (s) =>
        `  ${s.name.padEnd(8)} ${s.about}\n${" ".repeat(11)}options: ${Object.entries(s.defaults)
          .map(([k, v]) => `--${k} ${v}`)
          .join(" ")}`,
    ),
    "",
    "Options:",
    "  --target crier|socketio|both   what to run (default both, one after the other)",
    "  --duration S                   measured seconds per step (default 20; 10 in ramp mode; idle: 30, a ping interval)",
    "  --warmup S                     seconds of load before measuring (default 5; 3 in ramp mode)",
    "  --workers N                    generator threads (default 2)",
    "  --ramp                         raise the rate step by step until delivery or p99 fails; reports the highest",
    "                                 passing rate (--ramp-start, --ramp-factor 1.5, --ramp-max 100000,",
    "                                 --min-delivered 99.9, --max-p99 50)",
    "  --repeat N                     run each target N times, alternating; the table shows each target's run",
    "                                 with the least other CPU on the machine (the JSON has every run)",
    "  --socketio-adapter classic|sharded  @socket.io/redis-adapter flavour (default classic)",
    "  --json FILE                    write the full results as JSON",
    "  --out FILE                     append the report as Markdown (command, date, machine, table)",
    "  --cpu-prof DIR                 every instance writes a V8 CPU profile to DIR (summary: bench/profile.ts)",
    "  --keep-logs                    keep the servers' logs (printed path)",
  ].join("\n");
}

function number(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0)
    throw new UsageError(`--${name} must be a non-negative number, not ${value}`);
  return parsed;
}

class UsageError extends Error {}

/** Of a target's runs, the one whose measurement had the least other work on the machine. */
function quietest(runs: TargetResult[]): TargetResult {
  const noise = (run: TargetResult): number =>
    Math.max(run.idle?.otherCpuCores ?? 0, ...run.steps.map((s) => s.otherCpuCores + s.stealCores));
  return runs.reduce((best, run) => (noise(run) < noise(best) ? run : best));
}

/**
 * Ramp mode's steps: up by `factor` while steps pass; if the first step
 * already fails, down by `factor` until one passes (or the rate is below 1
 * publication/s). Stops at the first failure after a pass.
 */
function rampSchedule(
  criteria: RampCriteria,
  factor: number,
  max: number,
): (previous: StepResult) => number | undefined {
  let passedOnce = false;
  return (previous) => {
    const passed = previous.deliveredRatio >= criteria.minDeliveredRatio && previous.latency.p99 <= criteria.maxP99Ms;
    if (passed) {
      passedOnce = true;
      const next = Math.round(previous.rate * factor);
      return next <= max ? next : undefined;
    }
    if (passedOnce) return undefined;
    const lower = Math.floor(previous.rate / factor);
    return lower >= 1 ? lower : undefined;
  };
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  if (values.help || positionals.length === 0) {
    process.stdout.write(`${usage()}\n`);
    return values.help ? 0 : 2;
  }
  const name = positionals[0] ?? "";
  const scenario = findScenario(name);
  if (scenario === undefined || positionals.length > 1) {
    throw new UsageError(
      `unknown scenario ${positionals.join(" ")}; one of: ${SCENARIOS.map((s) => s.name).join(", ")}`,
    );
  }
  const scenarioValues: Record<string, number> = { ...scenario.defaults };
  const raw = values as Record<string, string | boolean | undefined>;
  for (const key of SCENARIO_OPTIONS) {
    const given = raw[key];
    if (typeof given !== "string") continue;
    if (!(key in scenario.defaults)) {
      throw new UsageError(
        `${scenario.name} takes no --${key}; its options: ${Object.keys(scenario.defaults).join(", ")}`,
      );
    }
    scenarioValues[key] = number(given, key, 0);
  }
  for (const [key, value] of Object.entries(scenarioValues)) {
    const counted = key !== "rate" && key !== "rooms";
    if (counted && (!Number.isInteger(value) || value < 1)) throw new UsageError(`--${key} must be a positive integer`);
  }
  if (scenario.name !== "idle" && !((scenarioValues.rate ?? 0) > 0)) throw new UsageError("--rate must be above 0");
  if ((scenarioValues.payload ?? 100) < 24)
    throw new UsageError("--payload must be at least 24 bytes (marker and time)");
  const targets: TargetName[] =
    values.target === "both" ? ["crier", "socketio"] : values.target === "crier" ? ["crier"] : ["socketio"];
  if (!["both", "crier", "socketio"].includes(values.target)) {
    throw new UsageError(`--target must be crier, socketio or both, not ${values.target}`);
  }
  const adapter = values["socketio-adapter"];
  if (adapter !== "classic" && adapter !== "sharded") {
    throw new UsageError(`--socketio-adapter must be classic or sharded, not ${adapter}`);
  }
  const ramp = values.ramp;
  const repeat = Math.max(1, Math.round(number(values.repeat, "repeat", 1)));
  if (repeat > 1 && ramp) throw new UsageError("--repeat applies to fixed-rate runs, not --ramp");
  if (ramp && scenario.name === "idle") throw new UsageError("idle has no rate to ramp");
  const criteria: RampCriteria = {
    minDeliveredRatio: number(values["min-delivered"], "min-delivered", 99.9) / 100,
    maxP99Ms: number(values["max-p99"], "max-p99", 50),
  };
  const rampFactor = number(values["ramp-factor"], "ramp-factor", 1.5);
  const rampMax = number(values["ramp-max"], "ramp-max", 100_000);
  if (ramp) {
    if (rampFactor <= 1) throw new UsageError("--ramp-factor must be above 1");
    scenarioValues.rate = number(
      values["ramp-start"],
      "ramp-start",
      Math.max(1, Math.round((scenarioValues.rate ?? 100) / 5)),
    );
  }
  let plan: Plan;
  try {
    plan = scenario.build(scenarioValues);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }

  const fileLimit = openFileLimit();
  if (plan.conns.length + 256 > fileLimit) {
    throw new UsageError(
      `${plan.conns.length} connections need more open files than this process may have (ulimit -n is ${fileLimit}): ` +
        "raise it (ulimit -n) or use fewer connections",
    );
  }
  const logDir = mkdtempSync(join(tmpdir(), "crier-bench-"));
  const cpuProfDir = values["cpu-prof"] === undefined ? undefined : resolve(values["cpu-prof"]);
  if (cpuProfDir !== undefined) mkdirSync(cpuProfDir, { recursive: true });
  const log = (line: string): void => {
    process.stderr.write(`[bench] ${line}\n`);
  };
  const options: RunOptions = {
    durationSeconds: number(values.duration, "duration", ramp ? 10 : scenario.name === "idle" ? 30 : 20),
    warmupSeconds: number(values.warmup, "warmup", ramp ? 3 : 5),
    workers: Math.max(1, Math.round(number(values.workers, "workers", 2))),
    logDir,
    socketioAdapter: adapter,
    ...(cpuProfDir === undefined ? {} : { cpuProfDir }),
    ...(ramp ? { nextRate: rampSchedule(criteria, rampFactor, rampMax) } : {}),
    log,
  };

  log(`${scenario.name}: ${plan.summary}; logs in ${logDir}`);
  const runs: TargetResult[] = [];
  let failed = false;
  try {
    // Repeats alternate the targets, so that a burst of other work on the machine hits both alike.
    for (let round = 0; round < repeat; round++) {
      for (const target of targets) {
        if (repeat > 1) log(`round ${round + 1} of ${repeat}`);
        runs.push(await runTarget(target, plan, options));
      }
    }
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    if (failed || values["keep-logs"]) log(`server logs kept in ${logDir}`);
    else rmSync(logDir, { recursive: true, force: true });
  }

  const report: BenchReport = {
    scenario: scenario.name,
    summary: ramp ? `${plan.summary}; ramp ×${rampFactor} per step` : plan.summary,
    command: `npm run bench -- ${argv.join(" ")}`,
    date: new Date().toISOString(),
    machine: machineInfo(),
    options: {
      ...scenarioValues,
      durationSeconds: options.durationSeconds,
      warmupSeconds: options.warmupSeconds,
      workers: options.workers,
      repeat,
      socketioAdapter: adapter,
      ramp,
    },
    results: targets.map((target) => quietest(runs.filter((run) => run.target === target))),
    ...(repeat > 1 ? { runs } : {}),
  };
  if (ramp) {
    const best: Partial<Record<TargetName, number | null>> = {};
    for (const result of report.results) {
      const passing = result.steps.filter(
        (s) => s.deliveredRatio >= criteria.minDeliveredRatio && s.latency.p99 <= criteria.maxP99Ms,
      );
      best[result.target] = passing.length === 0 ? null : Math.max(...passing.map((s) => s.rate));
    }
    report.ramp = { ...criteria, best };
  }
  process.stdout.write(`\n${renderText(report)}\n`);
  if (values.json !== undefined) {
    writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
    log(`JSON written to ${values.json}`);
  }
  if (values.out !== undefined) {
    appendFileSync(values.out, `\n${renderMarkdown(report)}`);
    log(`report appended to ${values.out}`);
  }
  return 0;
}

// Whatever ends the run, the servers and Redis it started go with it.
process.on("exit", killAll);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    process.stderr.write(`\n[bench] ${signal}: stopping every process this run started\n`);
    killAll();
    process.exit(130);
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`bench: ${(error as Error).message}\nRun 'npm run bench -- --help' for the options.\n`);
      process.exit(2);
    }
    process.stderr.write(`bench: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
