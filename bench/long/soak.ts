// `npm run bench:soak`: connect/subscribe/publish/disconnect churn against one
// live crier (with Redis) for --duration seconds (default 600), sampling the
// instance's RSS (/proc) and V8 heap (/metrics). Memory must stay flat: the report
// gives the slope of RSS over every sample and of the heap's floor (the least
// heap used in each minute, what survives GC) after the warm-up.

import { appendFileSync } from "node:fs";
import { SignJWT } from "jose";
import WebSocket from "ws";
import { sample } from "../proc.js";
import { commandLine, options, reportHeading, scrape, slope, startLive } from "./live.js";

const USAGE = "npm run bench:soak -- [--duration 600] [--warmup 60] [--loops 40] [--idle 100] [--out FILE]";
const opts = options(process.argv.slice(2), ["duration", "warmup", "loops", "idle", "out", "sample"]);
const durationS = Number(opts.get("duration") ?? 600);
const warmupS = Number(opts.get("warmup") ?? 60);
const loops = Number(opts.get("loops") ?? 40);
const idle = Number(opts.get("idle") ?? 100);
const sampleS = Number(opts.get("sample") ?? 5);
if (![durationS, warmupS, loops, idle, sampleS].every((n) => Number.isFinite(n) && n >= 0) || durationS > 3 * 3600) {
  process.stderr.write(`${USAGE}\n(duration at most 3 h)\n`);
  process.exit(2);
}

const SECRET = "soak-secret-soak-secret";
const USERS = 200;
const ROOMS = 20;
const live = await startLive({
  jwt: { secret: SECRET },
  allowAnonymous: true,
  namespaces: { chat: { history: { size: 50, ttl: "10m" }, presence: true, joinLeave: true } },
  limits: {
    maxConnectionsPerIp: 100_000,
    connectionsPerSecondPerIp: 100_000,
    connectionsPerSecond: 100_000,
    commandsPerSecond: 10_000,
  },
});
const tokens = await Promise.all(
  Array.from({ length: USERS }, (_, i) =>
    new SignJWT({ sub: `soak-user-${i}` })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("4h")
      .sign(new TextEncoder().encode(SECRET)),
  ),
);

interface Frame {
  op: string;
  id?: number;
  code?: string;
}

/** A connection that resolves replies by id. */
class Conn {
  readonly ws: WebSocket;
  private nextId = 1;
  private readonly pending = new Map<number, (frame: Frame) => void>();
  received = 0;
  readonly opened: Promise<void>;
  readonly closed: Promise<void>;

  constructor(url: string) {
    this.ws = new WebSocket(url, "crier.v1.json");
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("error", reject);
    });
    this.closed = new Promise((resolve) => this.ws.once("close", () => resolve()));
    this.ws.on("error", () => {});
    this.ws.on("message", (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      this.received++;
      if (frame.op === "ping") this.ws.send('{"op":"pong"}');
      if (frame.id !== undefined) this.pending.get(frame.id)?.(frame);
    });
  }

  call(command: Record<string, unknown>): Promise<Frame> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply to ${String(command.op)} in 10 s`)), 10_000);
      this.pending.set(id, (frame) => {
        clearTimeout(timer);
        this.pending.delete(id);
        if (frame.op === "error") reject(new Error(`${String(command.op)}: ${frame.code}`));
        else resolve(frame);
      });
      this.ws.send(JSON.stringify({ ...command, id }));
    });
  }
}

const counts = { cycles: 0, failures: 0, published: 0 };
const failureKinds = new Map<string, number>();
let running = true;

/** One client's life: connect, subscribe to three rooms, publish, ask presence and history, leave. */
async function cycle(n: number): Promise<void> {
  const conn = new Conn(live.url);
  try {
    await conn.opened;
    const anonymous = n % 5 === 0;
    await conn.call(anonymous ? { op: "connect" } : { op: "connect", token: tokens[n % USERS] });
    const room = `chat:soak-${n % ROOMS}`;
    await conn.call({ op: "subscribe", room });
    await conn.call({ op: "subscribe", room: `live-${n % ROOMS}` });
    await conn.call({ op: "subscribe", room: `own-${n}` });
    for (let i = 0; i < 3; i++) {
      await conn.call({
        op: "publish",
        room: i === 0 ? room : `live-${n % ROOMS}`,
        data: { n, i, pad: "x".repeat(64) },
      });
      counts.published++;
    }
    await conn.call({ op: "presence", room });
    await conn.call({ op: "history", room, limit: 10 });
    await conn.call({ op: "unsubscribe", room: `own-${n}` });
    counts.cycles++;
  } catch (error) {
    counts.failures++;
    const kind = error instanceof Error ? error.message.slice(0, 80) : String(error);
    failureKinds.set(kind, (failureKinds.get(kind) ?? 0) + 1);
  } finally {
    // Most leave with a close handshake, some just vanish (a dropped network).
    if (n % 4 === 0) conn.ws.terminate();
    else conn.ws.close(1000);
    await conn.closed;
  }
}

// Long-lived members that receive the churners' publications the whole time.
const members: Conn[] = [];
for (let i = 0; i < idle; i++) {
  const conn = new Conn(live.url);
  await conn.opened;
  await conn.call({ op: "connect", token: tokens[i % USERS] });
  await conn.call({ op: "subscribe", room: `chat:soak-${i % ROOMS}` });
  await conn.call({ op: "subscribe", room: `live-${i % ROOMS}` });
  members.push(conn);
}

interface Sample {
  t: number;
  rss: number;
  heap: number;
  connections: number;
}
const samples: Sample[] = [];
/** Scrapes of /metrics that failed: reported, since a soak with gaps in its samples proves less. */
let failedScrapes = 0;
let lastScrapeError = "";
const started = performance.now();
const sampler = setInterval(() => {
  scrape(live.httpUrl).then(
    (m) =>
      samples.push({
        t: (performance.now() - started) / 1000,
        rss: sample(live.instance.pid)?.rssBytes ?? 0,
        heap: m.get("crier_nodejs_heap_size_used_bytes") ?? 0,
        connections: m.get("crier_connections") ?? 0,
      }),
    (error: unknown) => {
      failedScrapes += 1;
      lastScrapeError = error instanceof Error ? error.message : String(error);
    },
  );
}, sampleS * 1000);
const progress = setInterval(() => {
  const last = samples.at(-1);
  process.stderr.write(
    `soak: ${Math.round((performance.now() - started) / 1000)} s, ${counts.cycles} cycles, ${counts.failures} failures` +
      (last === undefined ? "\n" : `, rss ${mb(last.rss)} MB, heap ${mb(last.heap)} MB\n`),
  );
}, 30_000);
setTimeout(() => (running = false), durationS * 1000);

let next = 0;
await Promise.all(
  Array.from({ length: loops }, async () => {
    while (running) await cycle(next++);
  }),
);
clearInterval(sampler);
clearInterval(progress);
for (const conn of members) conn.ws.close(1000);
await Promise.all(members.map((conn) => conn.closed));
const memberFrames = members.reduce((t, c) => t + c.received, 0);
const noCrash = await live.stop();

const measured = samples.filter((s) => s.t >= warmupS);
const rssSlope = slope(measured.map((s) => ({ x: s.t / 60, y: s.rss })));
const floors = new Map<number, number>();
for (const s of measured) {
  const minute = Math.floor(s.t / 60);
  floors.set(minute, Math.min(floors.get(minute) ?? Number.POSITIVE_INFINITY, s.heap));
}
const heapSlope = slope([...floors].map(([minute, heap]) => ({ x: minute + 0.5, y: heap })));
const first = measured[0];
const last = measured.at(-1);
const minutes = last !== undefined && first !== undefined ? (last.t - first.t) / 60 : 0;
const lines = [
  `duration                 ${durationS} s (warm-up ${warmupS} s left out of the slopes), ${loops} churning clients, ${idle} long-lived members`,
  `cycles                   ${counts.cycles} (${(counts.cycles / durationS).toFixed(1)}/s: connect, 3 subscribes, 3 publishes, presence, history, unsubscribe, close or drop)`,
  `failed cycles            ${counts.failures}${failureKinds.size > 0 ? ` (${[...failureKinds].map(([k, v]) => `${v}× ${k}`).join("; ")})` : ""}`,
  `publications             ${counts.published}; frames received by the long-lived members ${memberFrames}`,
  `samples                  ${measured.length} (every ${sampleS} s: RSS from /proc, heap from /metrics)` +
    (failedScrapes === 0 ? "" : `; ${failedScrapes} scrapes failed (last: ${lastScrapeError})`),
  `RSS                      ${mb(first?.rss ?? 0)} MB → ${mb(last?.rss ?? 0)} MB; slope ${kb(rssSlope)} KB/min (${mb(rssSlope * minutes)} MB over ${minutes.toFixed(1)} min)`,
  `heap used, minute floor  ${mb([...floors.values()][0] ?? 0)} MB → ${mb([...floors.values()].at(-1) ?? 0)} MB; slope ${kb(heapSlope)} KB/min`,
  `heap floor by minute     ${[...floors.values()].map((heap) => mb(heap)).join(" ")} MB`,
  `RSS by minute (last)     ${rssByMinute(measured).join(" ")} MB`,
  `crier exited on its own  ${noCrash ? "no" : "YES (crashed)"}`,
];
const text = lines.join("\n");
process.stdout.write(`${text}\n`);
const out = opts.get("out");
if (out !== undefined) {
  const command = commandLine("bench:soak", process.argv.slice(2));
  appendFileSync(out, [...reportHeading("soak: churn for memory growth", command), "```", text, "```", ""].join("\n"));
}
process.exit(noCrash && counts.cycles > 0 ? 0 : 1);

/** The last RSS sample of each minute. */
function rssByMinute(points: readonly Sample[]): string[] {
  const last = new Map<number, number>();
  for (const point of points) last.set(Math.floor(point.t / 60), point.rss);
  return [...last.values()].map((rss) => mb(rss));
}

function mb(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}
function kb(bytes: number): string {
  return (bytes / 1024).toFixed(1);
}
