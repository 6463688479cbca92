// The bench's output: one JSON document per run, and a table that puts the
// targets side by side with crier ÷ Socket.IO ratios (below 1: crier spends
// less), or for an external deployment its one column, with the rows that
// can be measured from outside. The Markdown form carries the command, date
// and machine, so it can be committed as written.

import type { TargetName } from "./generator/spec.js";
import type { MachineInfo } from "./machine.js";
import type { StepResult, TargetResult } from "./measure.js";

export interface RampCriteria {
  minDeliveredRatio: number;
  maxP99Ms: number;
}

/** A run against a deployment the bench did not start (--url). */
export interface ExternalInfo {
  urls: string[];
  /** How publishers published: client commands, or the HTTP API. */
  publishVia: "websocket" | "http-api";
  auth: "anonymous" | "token" | "jwt-secret";
  roomPrefix: string;
  /** Server processes on this machine whose CPU and memory were read (--pid); empty: not measured. */
  pids: number[];
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
  /** Present when the run was against a deployment the bench did not start. */
  external?: ExternalInfo;
}

const NAMES: Record<TargetName, string> = { crier: "crier", socketio: "socket.io", floor: "floor" };
/** The column of an external deployment. */
const DEPLOYMENT = "deployment";

/** The readable report: header lines and the table(s). */
export function renderText(report: BenchReport): string {
  const m = report.machine;
  const external = report.external;
  const lines = [
    `${report.scenario}: ${report.summary}`,
    external === undefined
      ? `${report.date} · ${m.cores} × ${m.cpuModel} · Node ${m.node} · Redis ${m.redis} · socket.io ${m.socketio} ` +
        `+ redis-adapter ${m.socketioRedisAdapter} (${String(report.options.socketioAdapter ?? "classic")})`
      : `${report.date} · generator: ${m.cores} × ${m.cpuModel} · Node ${m.node}`,
    ...(external === undefined
      ? []
      : [
          `deployment: ${external.urls.join(" ")}${report.results.some((r) => r.steps.length > 0) ? ` · ${publishing(external)}` : ""}`,
        ]),
    `$ ${report.command}`,
    "",
  ];
  const names = report.results.map((r) => (external === undefined ? NAMES[r.target] : DEPLOYMENT));
  if (report.ramp !== undefined) lines.push(...rampTables(report, report.ramp));
  else if (report.results.some((r) => r.idle !== undefined))
    lines.push(table(idleRows(report.results), report.results, names));
  else lines.push(table(stepRows(report.results), report.results, names));
  if (report.runs !== undefined) lines.push("", ...repeats(report.runs, report.results));
  const notes = problems(report.results, external);
  if (notes.length > 0) lines.push("", ...notes);
  return lines.join("\n");
}

function publishing(external: ExternalInfo): string {
  return external.publishVia === "http-api" ? "publishing through the HTTP API" : "publishing as client commands";
}

/** The report as a Markdown section (for --out). */
export function renderMarkdown(report: BenchReport): string {
  const m = report.machine;
  const external = report.external;
  const machine = `${m.cores} cores (${m.cpuModel}), ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}`;
  return [
    `## ${report.scenario}: ${report.summary}`,
    "",
    external === undefined
      ? `${report.date}; ${machine}, Redis ${m.redis}, socket.io ${m.socketio} with @socket.io/redis-adapter ` +
        `${m.socketioRedisAdapter}.`
      : `${report.date}; against ${external.urls.join(", ")} (${publishing(external)}); generator on ${machine}.`,
    "",
    "```",
    `$ ${report.command}`,
    "```",
    "",
    "```",
    renderText(report)
      .split("\n")
      .slice(external === undefined ? 4 : 5)
      .join("\n"),
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
  // Servers and Redis appear only where the bench could read them (not for an external deployment without --pid).
  const servers = steps.some((s) => (s?.servers.length ?? 0) > 0);
  const redis = steps.some((s) => s?.redis !== undefined);
  const serverRows: Row[] = [
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
  ];
  const redisRows: Row[] = [
    value(
      "Redis CPU, cores",
      (s) => s.redis?.cpuCores ?? Number.NaN,
      (n) => n.toFixed(2),
    ),
    ...(steps.some((s) => (s?.engineNodes?.length ?? 0) > 1)
      ? [
          {
            label: "  per engine node",
            cells: steps.map(
              (s) => s?.engineNodes?.map((node, i) => `${i + 1}: ${node.cpuCores.toFixed(2)}`).join(" ") ?? "-",
            ),
          },
        ]
      : []),
    value(
      "Redis CPU µs/delivery",
      (s) => s.redisUsPerDelivery ?? Number.NaN,
      (n) => n.toFixed(2),
    ),
  ];
  const memoryRows: Row[] = [
    perInstance("server RSS MB (end)", (server) => mb(server.rssBytes)),
    { label: "RSS KB/connection", cells: rssPerConnection.map(kb), values: rssPerConnection },
  ];
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
    ...(servers ? serverRows : []),
    ...(redis ? redisRows : []),
    ...(servers ? memoryRows : []),
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
  // Memory and CPU only where the bench could read the servers (not for an external deployment without --pid).
  if (instances > 0) {
    const all = results.map((r) => perConnection(r));
    rows.push({ label: "RSS KB/connection (all)", cells: all.map(kb), values: all });
    const idleCpu = results.map((r) => r.idle?.servers.reduce((t, c) => t + c.cpuCores, 0) ?? 0);
    rows.push({ label: "idle server CPU, cores", cells: idleCpu.map((n) => n.toFixed(3)), values: idleCpu });
  }
  if (results.some((r) => r.idle?.redis !== undefined)) {
    rows.push({ label: "idle Redis CPU, cores", cells: results.map((r) => r.idle?.redis?.cpuCores.toFixed(3) ?? "-") });
  }
  rows.push({
    label: "closed by the server",
    cells: results.map((r) => int(Object.values(r.closes).reduce((t, n) => t + n, 0))),
  });
  rows.push({
    label: "other CPU on the machine, cores",
    cells: results.map((r) => r.idle?.otherCpuCores.toFixed(2) ?? "-"),
  });
  return rows;
}

function rampTables(report: BenchReport, ramp: NonNullable<BenchReport["ramp"]>): string[] {
  const lines: string[] = [];
  const pass = (s: StepResult): boolean => s.deliveredRatio >= ramp.minDeliveredRatio && s.latency.p99 <= ramp.maxP99Ms;
  const names = report.results.map((r) => (report.external === undefined ? NAMES[r.target] : DEPLOYMENT));
  /** Server CPU, or "-" where no server was measured. */
  const cpu = (s: StepResult, get: (s: StepResult) => number): string =>
    s.servers.length > 0 ? get(s).toFixed(2) : "-";
  for (const [i, result] of report.results.entries()) {
    lines.push(`${names[i] ?? ""}:`);
    const header = ["rate/s", "pub/s", "deliv/s", "delivered %", "p50 ms", "p99 ms", "CPU cores", "µs/deliv", "pass"];
    const rows = result.steps.map((s) => [
      int(s.rate),
      int(s.publishesPerSecond),
      int(s.deliveriesPerSecond),
      (s.deliveredRatio * 100).toFixed(3),
      ms(s.latency.p50),
      ms(s.latency.p99),
      cpu(s, (x) => x.serverCpuCores),
      cpu(s, (x) => x.serverUsPerDelivery),
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
    ...(report.results.some((r) => r.steps.some((s) => s.servers.length > 0))
      ? [
          row(
            "server CPU µs/delivery there",
            numbers((s) => s.serverUsPerDelivery),
            (n) => n.toFixed(2),
          ),
        ]
      : []),
    row(
      "latency p99 ms there",
      numbers((s) => s.latency.p99),
      ms,
    ),
  ];
  lines.push(table(rows, report.results, names));
  if (report.results.length > 1) lines.push("(for the rate rows a ratio above 1 means crier sustains more)");
  return lines;
}

/**
 * A table with one column per target (named `names`) and, where Socket.IO
 * ran, crier ÷ socket.io (and floor ÷ socket.io) where it means something.
 */
function table(rows: Row[], results: TargetResult[], names: string[]): string {
  const peer = results.findIndex((r) => r.target === "socketio");
  const ratios = (["crier", "floor"] as const)
    .map((target) => ({ target, index: results.findIndex((r) => r.target === target) }))
    .filter(({ index }) => index >= 0 && peer >= 0);
  const header = ["", ...names, ...ratios.map(({ target }) => `${NAMES[target]} ÷ socket.io`)];
  const body = rows.map((row) => {
    const cells = [row.label, ...row.cells];
    for (const { index } of ratios) {
      const a = row.values?.[index] ?? Number.NaN;
      const b = row.values?.[peer] ?? Number.NaN;
      cells.push(Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? (a / b).toFixed(2) : "");
    }
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

/** What went wrong during the run, and what was not measured, in words. */
function problems(results: TargetResult[], external: ExternalInfo | undefined): string[] {
  const notes: string[] = [];
  for (const r of results) {
    const name = external === undefined ? NAMES[r.target] : DEPLOYMENT;
    if (r.connections.failed > 0) {
      notes.push(`${name}: ${r.connections.failed} connections failed to set up (${r.connections.firstError ?? ""})`);
    }
    const closes = Object.entries(r.closes);
    if (closes.length > 0) {
      notes.push(
        `${name}: connections closed by the server: ${closes.map(([code, n]) => `${n} × ${code}`).join(", ")}`,
      );
    }
    if (r.errors > 0) notes.push(`${name}: ${r.errors} errors, e.g. ${r.errorSamples.join(" | ")}`);
    const skipped = r.steps.reduce((t, s) => t + s.skipped, 0);
    if (skipped > 0) notes.push(`${name}: the generator fell behind and skipped ${skipped} publications`);
    const unsent = r.steps.reduce((t, s) => t + s.unsent, 0);
    if (unsent > 0) {
      const why = external?.publishVia === "http-api" ? "too many HTTP requests pending" : "their connection was gone";
      notes.push(`${name}: ${unsent} publications could not go out (${why})`);
    }
    const busy = Math.max(0, ...r.steps.map((s) => s.otherCpuCores + s.stealCores), r.idle?.otherCpuCores ?? 0);
    if (busy > 0.25) {
      notes.push(`${name}: other processes used ${busy.toFixed(2)} cores during the measurement: expect noise`);
    }
  }
  if (external !== undefined && external.pids.length === 0) {
    notes.push(
      "server CPU and memory: not measured for an external target (--pid PID,... reads them from /proc " +
        "for servers on this machine)",
    );
  }
  if (external?.publishVia === "http-api") notes.push("latency includes the HTTP API request of each publication");
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
