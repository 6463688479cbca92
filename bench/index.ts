// The bench as a command, the only door in: `npm run bench -- <scenario>`
// (cli.ts) and `crier bench <scenario>` (the crier CLI) both call runBench.
//
// Without --url it runs a scenario against crier and the Socket.IO peer on
// this machine, one after the other (run.ts): everything on 127.0.0.1, every
// process it starts killed when it ends. With --url it runs the scenario
// against a crier deployment it does not start (external/), bounded and
// announced before it starts. Either way it prints one table and writes JSON
// (--json) or appends Markdown (--out) on request, and Ctrl-C closes every
// connection before it exits.

import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { isatty } from "node:tty";
import { parseArgs } from "node:util";
import { killAll } from "./cluster/processes.js";
import { ENGINE_NAMES } from "./cluster/redis.js";
import { ProbeError, runExternal } from "./external/run.js";
import {
  checkBounds,
  EXTERNAL_LIMITS,
  EXTERNAL_SCENARIOS,
  type ExternalTarget,
  externalPlan,
  maxRate,
  parseExternal,
} from "./external/target.js";
import { closeAllPools } from "./generator/pool.js";
import type { ConnSpec, TargetName } from "./generator/spec.js";
import { machineInfo } from "./machine.js";
import type { StepResult, TargetResult } from "./measure.js";
import { PRESENCE_ABOUT, runPresenceBench } from "./presence/index.js";
import { openFileLimit } from "./proc.js";
import { type BenchReport, type RampCriteria, renderMarkdown, renderText } from "./report.js";
import { type RunOptions, runTarget } from "./run.js";
import { runScale, SCALE_ABOUT } from "./scale.js";
import { findScenario, SCENARIOS } from "./scenarios/index.js";
import type { Plan } from "./scenarios/scenario.js";
import { numberOption as number, UsageError } from "./usage.js";

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
  target: { type: "string" },
  duration: { type: "string" },
  warmup: { type: "string" },
  workers: { type: "string", default: "2" },
  processes: { type: "string" },
  ramp: { type: "boolean", default: false },
  repeat: { type: "string" },
  "ramp-start": { type: "string" },
  "ramp-factor": { type: "string", default: "1.5" },
  "ramp-max": { type: "string" },
  "max-p99": { type: "string", default: "50" },
  "min-delivered": { type: "string", default: "99.9" },
  "socketio-adapter": { type: "string" },
  engine: { type: "string" },
  json: { type: "string" },
  out: { type: "string" },
  "cpu-prof": { type: "string" },
  "keep-logs": { type: "boolean", default: false },
  url: { type: "string" },
  "api-key": { type: "string" },
  token: { type: "string" },
  "jwt-secret": { type: "string" },
  pid: { type: "string" },
  "room-prefix": { type: "string" },
  yes: { type: "boolean", default: false },
  help: { type: "boolean", default: false },
  ...Object.fromEntries(SCENARIO_OPTIONS.map((name) => [name, { type: "string" }])),
} as const;

/** Options only for runs on this machine, and only for --url runs. */
const LOCAL_ONLY = [
  "target",
  "repeat",
  "socketio-adapter",
  "engine",
  "cpu-prof",
  "keep-logs",
  "instances",
  "processes",
] as const;
const EXTERNAL_ONLY = ["api-key", "token", "jwt-secret", "pid", "room-prefix"] as const;
/** File descriptors a server process needs besides its connections (Redis, listening socket, modules, logs). */
const SERVER_FD_RESERVE = 256;
/** Options whose values are secrets: never printed or written to a report. */
const SECRET_OPTIONS = ["api-key", "token", "jwt-secret"] as const;

function usage(invokedAs: string): string {
  const limits = EXTERNAL_LIMITS;
  return [
    `Usage: ${invokedAs} <scenario> [options]`,
    "         on this machine: starts crier and Socket.IO (and Redis) itself, one after the other",
    `       ${invokedAs} <scenario> --url ws://HOST:PORT/ws[,...] [options]`,
    "         against a crier deployment you run: starts nothing, bounded, announced before it starts",
    "",
    "Scenarios:",
    `  ${"scale".padEnd(8)} ${SCALE_ABOUT}\n${" ".repeat(11)}options: --engine redis,redis-cluster --counts 1,2,4,8 ` +
      "--subscribers 800 --rooms 40 --rate 200 --payload 100 --duration 5 --warmup 2 [--ramp]",
    ...SCENARIOS.map(
      (s) =>
        `  ${s.name.padEnd(8)} ${s.about}\n${" ".repeat(11)}options: ${Object.entries(s.defaults)
          .map(([k, v]) => `--${k} ${v}`)
          .join(" ")}`,
    ),
    `  presence ${PRESENCE_ABOUT}\n${" ".repeat(11)}crier only; '${invokedAs} presence --help' for its options`,
    "",
    "Options:",
    "  --duration S                   measured seconds per step (default 20; 10 in ramp mode; idle: 30, a ping interval)",
    "  --warmup S                     seconds of load before measuring (default 5; 3 in ramp mode)",
    "  --workers N                    generator threads (default 2); past this process's open-file limit",
    "                                 (ulimit -n) they become child processes, as many as the connections need",
    "  --ramp                         raise the rate step by step until delivery or p99 fails; reports the highest",
    "                                 passing rate (--ramp-start, --ramp-factor 1.5, --ramp-max 100000,",
    "                                 --min-delivered 99.9, --max-p99 50)",
    "  --json FILE                    write the full results as JSON",
    "  --out FILE                     append the report as Markdown (command, date, machine, table)",
    "",
    "On this machine (starts Redis and the servers on 127.0.0.1, kills them at the end):",
    "  --target crier|socketio|both   what to run (default both, one after the other); floor, or a list such as",
    "                                 crier,socketio,floor, adds bench/peers/floor-server.ts: the least a Node.js",
    "                                 server can spend on the same fan-out (no auth, checks, acks or history)",
    "  --repeat N                     run each target N times, alternating; the table shows each target's run",
    "                                 with the least other CPU on the machine (the JSON has every run)",
    "  --socketio-adapter classic|sharded  @socket.io/redis-adapter flavour (default classic)",
    "  --engine redis|redis-cluster   crier's backplane (default redis): one redis-server, or a Redis Cluster of",
    "                                 three masters (sharded pub/sub); the peers always run on one Redis",
    "  --processes N                  server processes per instance (default 1): crier serve --workers N, and the",
    "                                 Socket.IO peer under node:cluster; for more connections than one process may open",
    "  --cpu-prof DIR                 every instance writes a V8 CPU profile to DIR (summary: bench/profile.ts)",
    "  --keep-logs                    keep the servers' logs (printed path)",
    "",
    `Against a deployment (--url; scenarios ${EXTERNAL_SCENARIOS.join(", ")}; nothing is started here):`,
    "  --url URL[,URL...]             crier WebSocket endpoints (ws:// or wss://); connections are spread over them,",
    "                                 as the local run spreads them over instances",
    "  --token JWT                    every connection connects with this token",
    "  --jwt-secret SECRET            the deployment's HS256 secret: each connection gets its own signed token",
    "                                 (needed by direct; rooms and publish claims cover this run's rooms)",
    "  --api-key KEY                  publish through the HTTP API (POST /api/publish, /api/send on each URL's",
    "                                 host) instead of client commands: for namespaces with publish: none or token",
    "  --room-prefix P                room names start with P (default bench:RUN:, RUN a fresh id per run)",
    "  --pid PID[,PID...]             servers on this machine, one per URL: their CPU and memory from /proc",
    "  --yes                          start without the 5-second pause after the summary",
    `  Bounds with --url: ${limits.connections} connections, ${limits.publishesPerSecond} publishes/s, ` +
      `${limits.deliveriesPerSecond} deliveries/s,`,
    `  --duration ${limits.durationSeconds} s, --warmup ${limits.warmupSeconds} s. ` +
      "Server CPU and memory are not measured without --pid.",
  ].join("\n");
}

const TARGETS: readonly TargetName[] = ["crier", "socketio", "floor"];

/** --target: crier, socketio, floor, or several joined by commas; `both` is crier,socketio. */
export function parseTargets(option: string): TargetName[] {
  const names = option === "both" ? ["crier", "socketio"] : option.split(",").map((name) => name.trim());
  const targets: TargetName[] = [];
  for (const name of names) {
    const target = TARGETS.find((t) => t === name);
    if (target === undefined) {
      throw new UsageError(
        `--target must be crier, socketio, floor, several of them joined by commas, or both, not ${option}`,
      );
    }
    if (!targets.includes(target)) targets.push(target);
  }
  return targets;
}

/** Of a target's runs, the one whose measurement had the least other work on the machine. */
export function quietest(runs: TargetResult[]): TargetResult {
  const noise = (run: TargetResult): number =>
    Math.max(run.idle?.otherCpuCores ?? 0, ...run.steps.map((s) => s.otherCpuCores + s.stealCores));
  return runs.reduce((best, run) => (noise(run) < noise(best) ? run : best));
}

/**
 * Ramp mode's steps: up by `factor` while steps pass; if the first step
 * already fails, down by `factor` until one passes (or the rate is below 1
 * publication/s). Stops at the first failure after a pass.
 */
export function rampSchedule(
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

/** argv as it may be printed and recorded: secret values replaced. */
export function redacted(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    const secret = SECRET_OPTIONS.find((name) => arg === `--${name}` || arg.startsWith(`--${name}=`));
    if (secret === undefined) out.push(arg);
    else if (arg.includes("=")) out.push(`--${secret}=***`);
    else {
      out.push(arg, "***");
      i++;
    }
  }
  return out;
}

function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

async function main(argv: string[], invokedAs: string): Promise<number> {
  // Several runs and a table of its own, with options of its own (bench/scale.ts).
  if (argv[0] === "scale" && !argv.includes("--help")) return runScale(argv.slice(1), `${invokedAs} scale`, log);
  // Presence at size is crier alone, with options of its own (bench/presence.ts).
  if (argv[0] === "presence") return runPresenceBench(argv.slice(1), invokedAs);
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  if (values.help || positionals.length === 0) {
    process.stdout.write(`${usage(invokedAs)}\n`);
    return values.help ? 0 : 2;
  }
  const name = positionals[0] ?? "";
  const scenario = findScenario(name);
  if (scenario === undefined || positionals.length > 1) {
    throw new UsageError(
      `unknown scenario ${positionals.join(" ")}; one of: ${SCENARIOS.map((s) => s.name).join(", ")}`,
    );
  }
  const raw = values as Record<string, string | boolean | undefined>;
  const given = (key: string): boolean => raw[key] !== undefined && raw[key] !== false;
  let external: ExternalTarget | undefined;
  if (values.url !== undefined) {
    const local = LOCAL_ONLY.find((key) => given(key) && !(key === "target" && values.target === "crier"));
    if (local !== undefined) {
      throw new UsageError(
        `--${local} is for runs on this machine, not --url` +
          (local === "instances" ? " (the URLs are the instances)" : ""),
      );
    }
    external = parseExternal(
      {
        url: values.url,
        "api-key": values["api-key"],
        token: values.token,
        "jwt-secret": values["jwt-secret"],
        pid: values.pid,
        "room-prefix": values["room-prefix"],
      },
      scenario.name,
    );
  } else {
    const remote = EXTERNAL_ONLY.find(given);
    if (remote !== undefined) throw new UsageError(`--${remote} goes with --url (a deployment to run against)`);
  }

  const scenarioValues: Record<string, number> = { ...scenario.defaults };
  for (const key of SCENARIO_OPTIONS) {
    const value = raw[key];
    if (typeof value !== "string") continue;
    if (!(key in scenario.defaults)) {
      throw new UsageError(
        `${scenario.name} takes no --${key}; its options: ${Object.keys(scenario.defaults).join(", ")}`,
      );
    }
    scenarioValues[key] = number(value, key, 0);
  }
  if (external !== undefined) {
    // Connections go to the URLs as they would go to as many instances.
    scenarioValues.instances = external.urls.length;
    scenarioValues.urls = external.urls.length;
  }
  for (const [key, value] of Object.entries(scenarioValues)) {
    const counted = key !== "rate" && key !== "rooms";
    if (counted && (!Number.isInteger(value) || value < 1)) throw new UsageError(`--${key} must be a positive integer`);
  }
  if (scenario.name !== "idle" && !((scenarioValues.rate ?? 0) > 0)) throw new UsageError("--rate must be above 0");
  if ((scenarioValues.payload ?? 100) < 24)
    throw new UsageError("--payload must be at least 24 bytes (marker and time)");
  const targets: TargetName[] = external !== undefined ? ["crier"] : parseTargets(values.target ?? "both");
  if (targets.includes("floor") && scenario.name === "direct") {
    throw new UsageError("--target floor fans out to rooms only: it has no users, so no direct");
  }
  if (targets.includes("floor") && values.processes !== undefined && values.processes !== "1") {
    throw new UsageError("--target floor runs one process per instance: leave out --processes");
  }
  const adapter = values["socketio-adapter"] ?? "classic";
  if (adapter !== "classic" && adapter !== "sharded") {
    throw new UsageError(`--socketio-adapter must be classic or sharded, not ${adapter}`);
  }
  const engine = ENGINE_NAMES.find((candidate) => candidate === (values.engine ?? "redis"));
  if (engine === undefined) throw new UsageError(`--engine must be ${ENGINE_NAMES.join(" or ")}, not ${values.engine}`);
  const ramp = values.ramp;
  const repeat = Math.max(1, Math.round(number(values.repeat, "repeat", 1)));
  if (repeat > 1 && ramp) throw new UsageError("--repeat applies to fixed-rate runs, not --ramp");
  if (ramp && scenario.name === "idle") throw new UsageError("idle has no rate to ramp");
  const criteria: RampCriteria = {
    minDeliveredRatio: number(values["min-delivered"], "min-delivered", 99.9) / 100,
    maxP99Ms: number(values["max-p99"], "max-p99", 50),
  };
  const rampFactor = number(values["ramp-factor"], "ramp-factor", 1.5);
  let rampMax = number(values["ramp-max"], "ramp-max", 100_000);
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
  let conns: ConnSpec[] = plan.conns;
  if (external !== undefined) ({ plan, conns } = await externalPlan(plan, external));
  const durationSeconds = number(values.duration, "duration", ramp ? 10 : scenario.name === "idle" ? 30 : 20);
  const warmupSeconds = number(values.warmup, "warmup", ramp ? 3 : 5);
  const workers = Math.max(1, Math.round(number(values.workers, "workers", 2)));
  if (external !== undefined) {
    checkBounds(plan, { durationSeconds, warmupSeconds });
    if (ramp) {
      // Without --ramp-max, as high as the bounds allow; past them, refused like any other rate.
      rampMax = values["ramp-max"] === undefined ? maxRate(plan) : rampMax;
      if (rampMax > maxRate(plan)) checkBounds({ ...plan, rate: rampMax }, { durationSeconds, warmupSeconds });
    }
  }

  const processes = Math.max(1, Math.round(number(values.processes, "processes", 1)));
  if (external === undefined) {
    // The generator spreads itself over processes as needed; a server process must hold its share alone.
    const fileLimit = openFileLimit();
    const perProcess = Math.ceil(plan.conns.length / (plan.instances * processes));
    if (perProcess + SERVER_FD_RESERVE > fileLimit) {
      throw new UsageError(
        `${perProcess} connections per server process need more open files than a process may have here ` +
          `(ulimit -n is ${fileLimit}): raise it (ulimit -n), or run more server processes per instance ` +
          `(--processes ${Math.ceil(plan.conns.length / (plan.instances * (fileLimit - SERVER_FD_RESERVE)))})`,
      );
    }
  }

  let results: TargetResult[];
  let runs: TargetResult[] = [];
  if (external !== undefined) {
    const result = await runExternal(external, plan, conns, {
      scenario: scenario.name,
      durationSeconds,
      warmupSeconds,
      workers,
      ...(ramp
        ? { ramp: { factor: rampFactor, max: rampMax }, nextRate: rampSchedule(criteria, rampFactor, rampMax) }
        : {}),
      countdown: !values.yes && isatty(0),
      log,
    });
    results = [result];
  } else {
    const logDir = mkdtempSync(join(tmpdir(), "crier-bench-"));
    const cpuProfDir = values["cpu-prof"] === undefined ? undefined : resolve(values["cpu-prof"]);
    if (cpuProfDir !== undefined) mkdirSync(cpuProfDir, { recursive: true });
    const options: RunOptions = {
      durationSeconds,
      warmupSeconds,
      workers,
      processes,
      logDir,
      engine,
      socketioAdapter: adapter,
      ...(cpuProfDir === undefined ? {} : { cpuProfDir }),
      ...(ramp ? { nextRate: rampSchedule(criteria, rampFactor, rampMax) } : {}),
      log,
    };
    log(`${scenario.name}: ${plan.summary}; logs in ${logDir}`);
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
    results = targets.map((target) => quietest(runs.filter((run) => run.target === target)));
    if (repeat === 1) runs = [];
  }

  const report: BenchReport = {
    scenario: scenario.name,
    summary:
      plan.summary +
      (processes > 1 ? ` (${processes} processes per instance)` : "") +
      (external === undefined && engine !== "redis" ? `; crier on ${engine}` : "") +
      (ramp ? `; ramp ×${rampFactor} per step` : ""),
    command: `${invokedAs} ${redacted(argv).join(" ")}`,
    date: new Date().toISOString(),
    machine: machineInfo(),
    options: {
      ...scenarioValues,
      durationSeconds,
      warmupSeconds,
      workers,
      ...(external === undefined ? { repeat, socketioAdapter: adapter, processes, engine } : {}),
      ramp,
    },
    results,
    ...(runs.length > 0 ? { runs } : {}),
    ...(external === undefined
      ? {}
      : {
          external: {
            urls: external.urls,
            publishVia: external.apiKey === undefined ? "websocket" : "http-api",
            auth: external.auth.kind,
            roomPrefix: external.roomPrefix,
            pids: external.pids,
          },
        }),
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

let hooked = false;

/** Whatever ends the run, connections are closed and the processes it started go with it. */
function hookProcess(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", killAll);
  let stopping = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (stopping) {
        process.stderr.write(`\n[bench] ${signal} again: exiting now\n`);
        killAll();
        process.exit(130);
      }
      stopping = true;
      process.stderr.write(
        `\n[bench] ${signal}: closing every connection (and stopping any process this run started)\n`,
      );
      const grace = new Promise((resolve) => setTimeout(resolve, 8000).unref());
      Promise.race([closeAllPools(), grace]).finally(() => {
        killAll();
        process.exit(130);
      });
    });
  }
}

/** Runs the bench with `argv` (what follows the command); resolves with the exit code. */
export async function runBench(argv: string[], invokedAs: string): Promise<number> {
  hookProcess();
  try {
    return await main(argv, invokedAs);
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`bench: ${(error as Error).message}\nRun '${invokedAs} --help' for the options.\n`);
      return 2;
    }
    if (error instanceof ProbeError) {
      process.stderr.write(`bench: stopped before any load: ${error.message}\n`);
      return 1;
    }
    process.stderr.write(`bench: ${(error as Error).stack ?? String(error)}\n`);
    return 1;
  }
}
