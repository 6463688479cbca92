// The bench's output: one JSON document per run, and a table that puts the
// targets side by side with crier ÷ Socket.IO ratios (below 1: crier spends
// less). The Markdown form carries the command, date and machine, so it can
// be committed as written.

import type { TargetName } from "./generator/spec.js";
import type { MachineInfo } from "./machine.js";
import type { StepResult, TargetResult } from "./run.js";

export interface RampCriteria {
  minDeliveredRatio: number;
  maxP99Ms: number;
}

export interface BenchReport {
  scenario: string;
  summary: string;
  command: string;
  date: string;
  machine: MachineInfo;
  options: Record<string, string | number | boolean>;
  ramp?: RampCriteria & { best: Partial<Record<TargetName, number | null>> };
  /** One run per target: the only one, or with --repeat the quietest. */
  results: TargetResult[];
  /** With --repeat: every run, in the order made. */
  runs?: TargetResult[];
}

const NAMES: Record<TargetName, string> = { crier: "crier", socketio: "socket.io" };

/** The readable report: header lines and the table(s). */
export function renderText(report: BenchReport): string {
  const lines = [
    `${report.scenario}: ${report.summary}`,
    `${report.date} · ${report.machine.cores} × ${report.machine.cpuModel} · Node ${report.machine.node} · ` +
      `Redis ${report.machine.redis} · socket.io ${report.machine.socketio} + redis-adapter ` +
      `${report.machine.socketioRedisAdapter} (${String(report.options.socketioAdapter ?? "classic")})`,
    `$ ${report.command}`,
    "",
  ];
  if (report.ramp !== undefined) lines.push(...rampTables(report, report.ramp));
  else if (report.results.some((r) => r.idle !== undefined))
    lines.push(table(idleRows(report.results), report.results));
  else lines.push(table(stepRows(report.results), report.results));
  if (report.runs !== undefined) lines.push("", ...repeats(report.runs, report.results));
  const notes = problems(report.results);
  if (notes.length > 0) lines.push("", ...notes);
  return lines.join("\n");
}

/** The report as a Markdown section (for --out). */
export function renderMarkdown(report: BenchReport): string {
  const m = report.machine;
  return [
    `## ${report.scenario}: ${report.summary}`,
    "",
    `${report.date}; ${m.cores} cores (${m.cpuModel}), ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}, ` +
      `Redis ${m.redis}, socket.io ${m.socketio} with @socket.io/redis-adapter ${m.socketioRedisAdapter}.`,
    "",
    "```",
    `$ ${report.command}`,
    "```",
    "",
    "```",
    renderText(report).split("\n").slice(4).join("\n"),
    "```",
    "",
  ].join("\n");
}

/** A table row: a label, one cell per target and, when the ratio means something, the numbers behind the cells. */
interface Row {
  label: string;
  cells: string[];
  values?: number[];
}

function stepRows(results: TargetResult[]): Row[] {
  const steps = results.map((r) => r.steps[0]);
  const value = (label: string, get: (s: StepResult) => number, format: (n: number) => string, ratio = true): Row => {
    const values = steps.map((s) => (s === undefined ? Number.NaN : get(s)));
    return { label, cells: values.map((v) => (Number.isNaN(v) ? "-" : format(v))), ...(ratio ? { values } : {}) };
  };
  const perInstance = (label: string, format: (s: StepResult["servers"][number]) => string): Row => ({
    label,
    cells: steps.map((s) => s?.servers.map((server) => `${server.name} ${format(server)}`).join(" ") ?? "-"),
  });
  const rssPerConnection = results.map((r) => perConnection(r));
  return [
    value("publications/s", (s) => s.publishesPerSecond, int, false),
    value("deliveries/s", (s) => s.deliveriesPerSecond, int),
    value("expected deliveries", (s) => s.expected, int, false),
    value("delivered", (s) => s.delivered, int, false),
    value("lost (expected − delivered)", (s) => s.expected - s.delivered, int, false),
    value(
      "delivered %",
      (s) => s.deliveredRatio * 100,
      (n) => n.toFixed(3),
      false,
    ),
    value("latency p50 ms", (s) => s.latency.p50, ms),
    value("latency p90 ms", (s) => s.latency.p90, ms),
    value("latency p99 ms", (s) => s.latency.p99, ms),
    value("latency p99.9 ms", (s) => s.latency.p999, ms),
    value("latency max ms", (s) => s.latency.max, ms),
    value(
      "server CPU, cores",
      (s) => s.serverCpuCores,
      (n) => n.toFixed(2),
    ),
    perInstance("  per instance", (server) => server.cpuCores.toFixed(2)),
    value(
      "  kernel (system) share %",
      (s) =>
        (100 * sumOf(s.servers, (x) => x.systemSeconds)) /
        Math.max(
          1e-9,
          sumOf(s.servers, (x) => x.cpuSeconds),
        ),
      (n) => n.toFixed(0),
      false,
    ),
    value(
      "server CPU µs/delivery",
      (s) => s.serverUsPerDelivery,
      (n) => n.toFixed(2),
    ),
    value(
      "Redis CPU, cores",
      (s) => s.redis.cpuCores,
      (n) => n.toFixed(2),
    ),
    value(
      "Redis CPU µs/delivery",
      (s) => s.redisUsPerDelivery,
      (n) => n.toFixed(2),
    ),
    perInstance("server RSS MB (end)", (server) => mb(server.rssBytes)),
    { label: "RSS KB/connection", cells: rssPerConnection.map(kb), values: rssPerConnection },
    value(
      "generator CPU, cores",
      (s) => s.generatorCpuCores,
      (n) => n.toFixed(2),
      false,
    ),
    value(
      "other CPU on the machine, cores",
      (s) => s.otherCpuCores + s.stealCores,
      (n) => n.toFixed(2),
      false,
    ),
  ];
}

function idleRows(results: TargetResult[]): Row[] {
  const instances = Math.max(...results.map((r) => r.memory.length));
  const rows: Row[] = [
    { label: "connections", cells: results.map((r) => int(r.connections.connected)) },
    {
      label: "set-up seconds",
      cells: results.map((r) => r.setupSeconds.toFixed(1)),
      values: results.map((r) => r.setupSeconds),
    },
  ];
  for (let i = 0; i < instances; i++) {
    const at = (r: TargetResult) => r.memory[i];
    const name = results.map(at).find((m) => m !== undefined)?.name ?? String(i);
    rows.push({ label: `${name}: connections`, cells: results.map((r) => int(at(r)?.connections ?? 0)) });
    rows.push({ label: `${name}: RSS MB before → after (median)`, cells: results.map((r) => rssChange(at(r))) });
    const bytes = results.map((r) => at(r)?.bytesPerConnection ?? 0);
    rows.push({ label: `${name}: RSS KB/connection`, cells: bytes.map(kb), values: bytes });
  }
  const all = results.map((r) => perConnection(r));
  rows.push({ label: "RSS KB/connection (all)", cells: all.map(kb), values: all });
  const idleCpu = results.map((r) => r.idle?.servers.reduce((t, c) => t + c.cpuCores, 0) ?? 0);
  rows.push({ label: "idle server CPU, cores", cells: idleCpu.map((n) => n.toFixed(3)), values: idleCpu });
  rows.push({ label: "idle Redis CPU, cores", cells: results.map((r) => r.idle?.redis.cpuCores.toFixed(3) ?? "-") });
  rows.push({
    label: "other CPU on the machine, cores",
    cells: results.map((r) => r.idle?.otherCpuCores.toFixed(2) ?? "-"),
  });
  return rows;
}

function rampTables(report: BenchReport, ramp: NonNullable<BenchReport["ramp"]>): string[] {
  const lines: string[] = [];
  const pass = (s: StepResult): boolean => s.deliveredRatio >= ramp.minDeliveredRatio && s.latency.p99 <= ramp.maxP99Ms;
  for (const result of report.results) {
    lines.push(`${NAMES[result.target]}:`);
    const header = ["rate/s", "pub/s", "deliv/s", "delivered %", "p50 ms", "p99 ms", "CPU cores", "µs/deliv", "pass"];
    const rows = result.steps.map((s) => [
      int(s.rate),
      int(s.publishesPerSecond),
      int(s.deliveriesPerSecond),
      (s.deliveredRatio * 100).toFixed(3),
      ms(s.latency.p50),
      ms(s.latency.p99),
      s.serverCpuCores.toFixed(2),
      s.serverUsPerDelivery.toFixed(2),
      pass(s) ? "yes" : "no",
    ]);
    lines.push(grid([header, ...rows]), "");
  }
  const best = report.results.map((r) => r.steps.find((s) => s.rate === ramp.best[r.target]));
  const numbers = (get: (s: StepResult) => number): number[] =>
    best.map((s) => (s === undefined ? Number.NaN : get(s)));
  const row = (label: string, values: number[], format: (n: number) => string): Row => ({
    label,
    cells: values.map((v) => (Number.isNaN(v) ? "none" : format(v))),
    values,
  });
  const rows: Row[] = [
    row(
      `highest rate with ≥ ${(ramp.minDeliveredRatio * 100).toFixed(1)}% delivered and p99 ≤ ${ramp.maxP99Ms} ms`,
      numbers((s) => s.rate),
      int,
    ),
    row(
      "deliveries/s there",
      numbers((s) => s.deliveriesPerSecond),
      int,
    ),
    row(
      "server CPU µs/delivery there",
      numbers((s) => s.serverUsPerDelivery),
      (n) => n.toFixed(2),
    ),
    row(
      "latency p99 ms there",
      numbers((s) => s.latency.p99),
      ms,
    ),
  ];
  lines.push(table(rows, report.results), "(for the rate rows a ratio above 1 means crier sustains more)");
  return lines;
}

/** A table with one column per target and, for both targets, crier ÷ socket.io where it means something. */
function table(rows: Row[], results: TargetResult[]): string {
  const crier = results.findIndex((r) => r.target === "crier");
  const peer = results.findIndex((r) => r.target === "socketio");
  const withRatio = crier >= 0 && peer >= 0;
  const header = ["", ...results.map((r) => NAMES[r.target])];
  if (withRatio) header.push("crier ÷ socket.io");
  const body = rows.map((row) => {
    const cells = [row.label, ...row.cells];
    if (!withRatio) return cells;
    const a = row.values?.[crier] ?? Number.NaN;
    const b = row.values?.[peer] ?? Number.NaN;
    cells.push(Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? (a / b).toFixed(2) : "");
    return cells;
  });
  return grid([header, ...body]);
}

function grid(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows
    .map((row) =>
      row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join("  "),
    )
    .join("\n");
}

/** With --repeat: every run's key numbers, and which one the table shows. */
function repeats(runs: TargetResult[], shown: TargetResult[]): string[] {
  const lines = ["every run (the table shows the one with the least other CPU on the machine):"];
  for (const run of runs) {
    const step = run.steps[0];
    const mark = shown.includes(run) ? "*" : " ";
    const cost =
      step === undefined
        ? `idle CPU ${(run.idle?.servers.reduce((t, c) => t + c.cpuCores, 0) ?? 0).toFixed(3)} cores`
        : `${step.serverUsPerDelivery.toFixed(2)} µs/delivery, p99 ${ms(step.latency.p99)} ms`;
    const other = step === undefined ? (run.idle?.otherCpuCores ?? 0) : step.otherCpuCores + step.stealCores;
    lines.push(` ${mark} ${NAMES[run.target].padEnd(9)} ${cost}, other CPU ${other.toFixed(2)} cores`);
  }
  return lines;
}

/** What went wrong during the run, in words. */
function problems(results: TargetResult[]): string[] {
  const notes: string[] = [];
  for (const r of results) {
    const name = NAMES[r.target];
    if (r.connections.failed > 0) {
      notes.push(`${name}: ${r.connections.failed} connections failed to set up (${r.connections.firstError ?? ""})`);
    }
    const closes = Object.entries(r.closes);
    if (closes.length > 0) {
      notes.push(
        `${name}: connections closed by the server: ${closes.map(([code, n]) => `${n} × ${code}`).join(", ")}`,
      );
    }
    if (r.errors > 0) notes.push(`${name}: ${r.errors} error frames, e.g. ${r.errorSamples.join(" | ")}`);
    const skipped = r.steps.reduce((t, s) => t + s.skipped, 0);
    if (skipped > 0) notes.push(`${name}: the generator fell behind and skipped ${skipped} publications`);
    const busy = Math.max(0, ...r.steps.map((s) => s.otherCpuCores + s.stealCores), r.idle?.otherCpuCores ?? 0);
    if (busy > 0.25) {
      notes.push(`${name}: other processes used ${busy.toFixed(2)} cores during the measurement: expect noise`);
    }
  }
  return notes;
}

function sumOf<T>(items: readonly T[], get: (item: T) => number): number {
  return items.reduce((total, item) => total + get(item), 0);
}

/** Resident memory per connection over all instances of a target, bytes. */
function perConnection(r: TargetResult): number {
  const connections = r.memory.reduce((t, m) => t + m.connections, 0);
  const grown = r.memory.reduce((t, m) => t + (m.rssAfterBytes - m.rssBeforeBytes), 0);
  return connections > 0 ? grown / connections : 0;
}

function rssChange(m: { rssBeforeBytes: number; rssAfterBytes: number } | undefined): string {
  return m === undefined ? "-" : `${mb(m.rssBeforeBytes)} → ${mb(m.rssAfterBytes)}`;
}

function int(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function ms(n: number): string {
  return n < 10 ? n.toFixed(2) : n.toFixed(1);
}

function mb(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(0);
}

function kb(bytes: number): string {
  return (bytes / 1024).toFixed(1);
}
