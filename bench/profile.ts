// Summarises a V8 CPU profile (from `npm run bench -- ... --cpu-prof DIR`):
// the functions with the most self time, and self time by where the code
// lives (crier's packages, each dependency, Node's internals, GC).
//
//   node --import tsx bench/profile.ts DIR/crier-a.cpuprofile [--top 25] [--callers 10] [--from S] [--to S]
//
// --from/--to S: only samples between S seconds after the profile started and
// S seconds after (the measured window, leaving connection set-up and
// teardown out); --timeline prints busy time per second to find it.
// --callers N: for the N functions with the most self time, their nearest
// callers outside Node's internals (a native write is only telling with the
// code that asked for it).

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Where a frame's code lives: a crier package, a dependency, Node itself, or V8's own work. */
function area(frame: CallFrame): string {
  const url = frame.url;
  if (url === "") return frame.functionName.startsWith("(") ? frame.functionName : "(native)";
  if (url.startsWith("node:")) return "node internals";
  const dependency = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dependency?.[1] !== undefined) return dependency[1];
  const own = /packages\/([^/]+)\/src\/(?:([^/]+)\/)?/.exec(url);
  if (own?.[1] !== undefined) return `crier ${own[1]}${own[2] === undefined ? "" : `/${own[2]}`}`;
  return url;
}

/** A frame as "function path:line", paths shortened to node_modules/… or packages/…. */
function label(frame: CallFrame): string {
  const where =
    frame.url === ""
      ? ""
      : ` ${frame.url.replace(/^.*?(node_modules|packages|bench)\//, "$1/")}:${frame.lineNumber + 1}`;
  return `${frame.functionName || "(anonymous)"}${where}`;
}

/** The nearest caller of node `id` that is not Node's own code: who asked for a write, a parse, ... */
function outsideNode(id: number, byId: Map<number, ProfileNode>, parentOf: Map<number, number>): string {
  for (let at = parentOf.get(id); at !== undefined; at = parentOf.get(at)) {
    const frame = byId.get(at)?.callFrame;
    if (frame !== undefined && frame.url !== "" && !frame.url.startsWith("node:")) return label(frame);
  }
  return "(no JavaScript caller)";
}

function main(): void {
  const { values, positionals } = parseArgs({
    options: {
      top: { type: "string", default: "25" },
      callers: { type: "string", default: "0" },
      from: { type: "string", default: "0" },
      to: { type: "string" },
      timeline: { type: "boolean", default: false },
    },
    allowPositionals: true,
  });
  const file = positionals[0];
  if (file === undefined) {
    process.stderr.write("usage: node --import tsx bench/profile.ts FILE.cpuprofile [--top N] [--callers N]\n");
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  const fromUs = Number(values.from) * 1e6;
  const toUs = values.to === undefined ? Number.POSITIVE_INFINITY : Number(values.to) * 1e6;
  if (!(fromUs >= 0) || !(toUs > fromUs)) {
    process.stderr.write("--from and --to are seconds since the profile started, --to after --from\n");
    process.exit(2);
  }
  const selfTime = new Map<number, number>();
  /** Busy µs per second of the profile, for --timeline. */
  const perSecond: number[] = [];
  let at = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (byId.get(id)?.callFrame.functionName !== "(idle)") {
      const second = Math.floor(at / 1e6);
      perSecond[second] = (perSecond[second] ?? 0) + delta;
    }
    if (at < fromUs || at > toUs) return;
    selfTime.set(id, (selfTime.get(id) ?? 0) + delta);
  });
  if (values.timeline) {
    for (const [second, busyUs] of perSecond.entries()) {
      process.stdout.write(
        `${String(second).padStart(4)} s  ${(((busyUs ?? 0) / 1e6) * 100).toFixed(0).padStart(3)}% busy\n`,
      );
    }
    return;
  }
  const total = [...selfTime.values()].reduce((t, v) => t + v, 0);
  const idle = [...selfTime.entries()]
    .filter(([id]) => byId.get(id)?.callFrame.functionName === "(idle)")
    .reduce((t, [, v]) => t + v, 0);
  const busy = Math.max(1, total - idle);

  const functions = new Map<string, number>();
  const callers = new Map<string, Map<string, number>>();
  const areas = new Map<string, number>();
  for (const [id, time] of selfTime) {
    const frame = byId.get(id)?.callFrame;
    if (frame === undefined || frame.functionName === "(idle)") continue;
    const key = label(frame);
    functions.set(key, (functions.get(key) ?? 0) + time);
    const byCaller = callers.get(key) ?? new Map<string, number>();
    const caller = outsideNode(id, byId, parentOf);
    byCaller.set(caller, (byCaller.get(caller) ?? 0) + time);
    callers.set(key, byCaller);
    const place = area(frame);
    areas.set(place, (areas.get(place) ?? 0) + time);
  }
  const pct = (time: number): string => `${((time / busy) * 100).toFixed(1).padStart(5)}%`;
  const seconds = Math.min(toUs, profile.endTime - profile.startTime) / 1e6 - fromUs / 1e6;
  const lines = [
    `${file}: ${seconds.toFixed(1)} s profiled, ${(busy / 1e6).toFixed(1)} s busy (${((busy / Math.max(1, total)) * 100).toFixed(0)}%)`,
    "",
    "self time by area (share of busy time):",
    ...[...areas.entries()].sort((a, b) => b[1] - a[1]).map(([name, time]) => `  ${pct(time)}  ${name}`),
    "",
    `top ${values.top} functions by self time:`,
    ...[...functions.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, Number(values.top))
      .map(([name, time]) => `  ${pct(time)}  ${name}`),
  ];
  const withCallers = Number(values.callers);
  if (withCallers > 0) {
    lines.push("", `callers of the top ${withCallers}:`);
    for (const [name, time] of [...functions.entries()].sort((a, b) => b[1] - a[1]).slice(0, withCallers)) {
      lines.push(`  ${pct(time)}  ${name}`);
      const top = [...(callers.get(name) ?? new Map<string, number>()).entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 4);
      for (const [caller, share] of top) lines.push(`      ${pct(share)}  <- ${caller}`);
    }
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}

main();
