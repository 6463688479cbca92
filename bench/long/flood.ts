// `npm run bench:flood`: a connection flood from many loopback addresses
// (127.0.2.1, .2, ...) against one live crier with its default limits, while
// one well-behaved client publishes to its own room and times each message's
// round trip. Reports that client's latency before and during the flood, and
// what became of the flood's upgrade attempts (accepted, 429, 503, reset).
// The attacker runs in a process of its own, on the same cores.

import { spawn } from "node:child_process";
import { appendFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { newHistogram } from "../generator/recorder.js";
import { commandLine, options, reportHeading, scrape, startLive } from "./live.js";

const ATTACKER = fileURLToPath(new URL("./flood-attacker.ts", import.meta.url));
const opts = options(process.argv.slice(2), [
  "addresses",
  "inflight",
  "duration",
  "baseline",
  "hold",
  "connections-per-second",
  "connections-per-second-per-ip",
  "out",
]);
const addresses = Number(opts.get("addresses") ?? 100);
const inflight = Number(opts.get("inflight") ?? 4);
const durationS = Number(opts.get("duration") ?? 20);
const baselineS = Number(opts.get("baseline") ?? 10);
const holdMs = Number(opts.get("hold") ?? 2000);
if (
  ![addresses, inflight, durationS, baselineS, holdMs].every((n) => Number.isFinite(n) && n >= 0) ||
  addresses > 250 ||
  inflight > 16 ||
  durationS > 120
) {
  process.stderr.write(
    "npm run bench:flood -- [--addresses 100 (≤ 250)] [--inflight 4 (≤ 16)] [--duration 20 (≤ 120)] [--baseline 10] [--hold 2000] [--connections-per-second N] [--connections-per-second-per-ip N] [--out FILE]\n",
  );
  process.exit(2);
}

// crier's default limits unless told otherwise: the point is what they do.
const limits: Record<string, number> = {};
const perSecond = opts.get("connections-per-second");
const perSecondPerIp = opts.get("connections-per-second-per-ip");
if (perSecond !== undefined) limits.connectionsPerSecond = Number(perSecond);
if (perSecondPerIp !== undefined) limits.connectionsPerSecondPerIp = Number(perSecondPerIp);
const live = await startLive({ limits });
const port = live.instance.port;

// The well-behaved client: one publication every 20 ms to its own room, timed until it comes back.
const good = new WebSocket(live.url, "crier.v1.json");
await new Promise<void>((resolve, reject) => {
  good.once("open", () => resolve());
  good.once("error", reject);
});
const sentAt = new Map<number, number>();
let phase: "baseline" | "flood" | "done" = "baseline";
const histograms = { baseline: newHistogram(), flood: newHistogram() };
const received = { baseline: 0, flood: 0 };
const published = { baseline: 0, flood: 0 };
let goodClosed: number | undefined;
/** Called once nothing published is still on its way back (set when the publisher stops). */
let drained: (() => void) | undefined;
good.on("close", (code) => {
  goodClosed = code;
});
good.on("message", (data) => {
  const frame = JSON.parse(String(data)) as { op: string; data?: { n: number; phase: "baseline" | "flood" } };
  if (frame.op === "ping") good.send('{"op":"pong"}');
  if (frame.op !== "message" || frame.data === undefined) return;
  const at = sentAt.get(frame.data.n);
  if (at === undefined) return;
  sentAt.delete(frame.data.n);
  histograms[frame.data.phase].recordValue(Math.max(1, Math.round((performance.now() - at) * 1000)));
  received[frame.data.phase]++;
  if (sentAt.size === 0) drained?.();
});
good.send('{"op":"connect"}');
good.send('{"op":"subscribe","room":"steady","id":1}');
let n = 0;
const publisher = setInterval(() => {
  if (phase === "done") return;
  n++;
  sentAt.set(n, performance.now());
  published[phase]++;
  good.send(JSON.stringify({ op: "publish", room: "steady", data: { n, phase } }));
}, 20);

await new Promise((resolve) => setTimeout(resolve, baselineS * 1000));

// The flood, from a process of its own (flood-attacker.ts).
phase = "flood";
const attacker = spawn(
  process.execPath,
  ["--import", "tsx", ATTACKER, ...[port, addresses, inflight, durationS, holdMs].map(String)],
  { stdio: ["ignore", "pipe", "inherit"] },
);
let report = "";
attacker.stdout.on("data", (chunk: Buffer) => {
  report += chunk.toString();
});
await new Promise((resolve) => attacker.once("exit", resolve));
const flood = JSON.parse(report) as { attempts: number; seconds: number; outcomes: Record<string, number> };
const outcomes = new Map(Object.entries(flood.outcomes));
const attempts = flood.attempts;
const floodSeconds = flood.seconds;
phase = "done";
clearInterval(publisher);
// Wait for the last publications to come back, for at most 5 s (what never comes is reported as lost).
await new Promise<void>((resolve) => {
  if (sentAt.size === 0) return resolve();
  drained = resolve;
  setTimeout(resolve, 5000).unref();
});
const metrics = await scrape(live.httpUrl);
const goodState = goodClosed === undefined ? "open throughout" : `closed with ${goodClosed}`;
good.close(1000);
const noCrash = await live.stop();

const row = (name: "baseline" | "flood"): string => {
  const h = histograms[name];
  const q = (p: number): string => (h.getValueAtPercentile(p) / 1000).toFixed(2);
  return `${name.padEnd(9)} ${String(published[name]).padStart(6)} ${String(received[name]).padStart(9)}   ${q(50).padStart(7)} ${q(90).padStart(7)} ${q(99).padStart(7)} ${(h.maxValue / 1000).toFixed(2).padStart(8)}`;
};
const refused = [...metrics].filter(([k]) => k.startsWith("crier_refused_total{"));
const lines = [
  `limits                   ${Object.keys(limits).length === 0 ? "crier's defaults" : JSON.stringify(limits)}`,
  `flood                    ${addresses} addresses (127.0.2.x) × ${inflight} attempts in flight for ${floodSeconds.toFixed(1)} s; accepted sockets held ${holdMs} ms without a connect frame`,
  `attempts                 ${attempts} (${Math.round(attempts / floodSeconds)}/s): ${[...outcomes]
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(", ")}`,
  `refused (server metrics) ${refused.length === 0 ? "none" : refused.map(([k, v]) => `${/reason="([^"]+)"/.exec(k)?.[1]} ${v}`).join(", ")}`,
  "",
  "the well-behaved client: 50 publications/s to its own room, round trip in ms",
  "phase     sent   received     p50     p90     p99      max",
  row("baseline"),
  row("flood"),
  "",
  `the client's connection  ${goodState}; crier exited on its own: ${noCrash ? "no" : "YES"}`,
];
const text = lines.join("\n");
process.stdout.write(`${text}\n`);
const out = opts.get("out");
if (out !== undefined) {
  appendFileSync(
    out,
    [
      ...reportHeading(
        `flood: many addresses against ${Object.keys(limits).length === 0 ? "the default" : "lowered"} limits`,
        commandLine("bench:flood", process.argv.slice(2)),
      ),
      "```",
      text,
      "```",
      "",
    ].join("\n"),
  );
}
process.exit(noCrash && goodState === "open throughout" ? 0 : 1);
