// `presence`: presence at size, on crier alone (Socket.IO has no presence to
// compare with). It starts a private Redis and --instances crier instances on
// 127.0.0.1, then:
//   1. fills one room with --members members spread over the instances, and
//      asks `presence` (the whole list) and `presence_stats` (the counts)
//      --queries times from a client on each instance, one after the other:
//      latency percentiles (HDR, µs) and the size of the answer;
//   2. a join storm: a room with presence and join/leave events, a listener
//      and a publisher publishing at --rate per second; --storm connections
//      join it as fast as they can, and the listener's message latency before
//      and during the storm shows whether the storm holds delivery up (every
//      message is checked to arrive, in order).
// The storm's joiners run in a worker thread, so the listener's clock and the
// publisher's timer here are not held up by the bench's own work. Everything
// it starts is killed when it ends; connections are bounded by the options.

import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Histogram } from "hdr-histogram-js";
import type { WebSocket } from "ws";
import { type Instance, startInstances, stopInstances } from "../cluster/instances.js";
import { killAll } from "../cluster/processes.js";
import { startRedis, stopRedis } from "../cluster/redis.js";
import { newHistogram } from "../generator/recorder.js";
import { machineInfo } from "../machine.js";
import { numberOption, UsageError } from "../usage.js";
import { stormFromWorker } from "./joiners.js";
import { type Frame, fill, member } from "./members.js";

export const PRESENCE_ABOUT =
  "a room of --members (10000) over --instances (2): presence and presence_stats from each instance; then a join storm of --storm (1000) while --rate (200) messages/s flow";

const OPTIONS = {
  instances: { type: "string", default: "2" },
  members: { type: "string", default: "10000" },
  queries: { type: "string", default: "100" },
  storm: { type: "string", default: "1000" },
  rate: { type: "string", default: "200" },
  out: { type: "string" },
  help: { type: "boolean", default: false },
} as const;

/** Sends commands on `ws` one after the other and resolves with each reply's latency (µs) and size. */
function asker(ws: WebSocket): (command: Frame) => Promise<{ us: number; bytes: number; frame: Frame }> {
  let id = 100;
  const waiting = new Map<number, (text: string) => void>();
  ws.on("message", (data) => {
    const text = String(data);
    const match = /"id":(\d+)/.exec(text.slice(-20));
    const waiter = match === null ? undefined : waiting.get(Number(match[1]));
    if (waiter !== undefined) waiter(text);
  });
  return (command) =>
    new Promise((resolve) => {
      const mine = ++id;
      const start = performance.now();
      waiting.set(mine, (text) => {
        waiting.delete(mine);
        resolve({ us: (performance.now() - start) * 1000, bytes: Buffer.byteLength(text), frame: JSON.parse(text) });
      });
      ws.send(JSON.stringify({ ...command, id: mine }));
    });
}

function percentiles(h: Histogram): string {
  const ms = (us: number): string => (us / 1000).toFixed(us < 10_000 ? 2 : 1);
  return `${ms(h.getValueAtPercentile(50))} / ${ms(h.getValueAtPercentile(99))} / ${ms(h.maxValue)}`;
}

async function sizePhase(instances: Instance[], members: number, queries: number, lines: string[]): Promise<void> {
  const room = "big:room";
  const ports = instances.map((instance) => instance.port);
  const sockets: WebSocket[] = [];
  try {
    const started = performance.now();
    await fill(ports, room, members, sockets);
    lines.push(`- ${members} members joined in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    lines.push("", "| asked on | command | answer | latency p50 / p99 / max (ms) |", "|---|---|---|---|");
    for (const [i, instance] of instances.entries()) {
      const ask = asker(sockets[i] as WebSocket);
      for (const op of ["presence", "presence_stats"] as const) {
        const h = newHistogram();
        let answer = "";
        for (let q = 0; q < queries; q++) {
          const { us, bytes, frame } = await ask({ op, room });
          h.recordValue(Math.max(1, Math.round(us)));
          const listed = Array.isArray(frame.members) ? frame.members.length : undefined;
          if (op === "presence" && listed !== members) throw new Error(`presence listed ${listed} of ${members}`);
          answer =
            op === "presence"
              ? `${listed} members, ${(bytes / 1024).toFixed(0)} KiB`
              : `clients ${String(frame.clients)}, users ${String(frame.users)}`;
        }
        lines.push(`| instance ${instance.name} | \`${op}\` ×${queries} | ${answer} | ${percentiles(h)} |`);
      }
    }
  } finally {
    for (const ws of sockets) ws.terminate();
  }
}

async function stormPhase(instances: Instance[], storm: number, rate: number, lines: string[]): Promise<void> {
  const room = "storm:room";
  const ports = instances.map((instance) => instance.port);
  const sockets: WebSocket[] = [];
  const before = newHistogram();
  const during = newHistogram();
  let phase: "before" | "during" | "after" = "before";
  let last = 0;
  let outOfOrder = 0;
  let received = 0;
  let seq = 0;
  /** Called once every publication has arrived (set when the publisher stops). */
  let allIn: (() => void) | undefined;
  try {
    const listener = await member(ports[0] as number, room, (frame) => {
      if (frame.op !== "message") return;
      const data = frame.data as { seq: number; t: number };
      if (data.seq !== last + 1) outOfOrder += 1;
      last = data.seq;
      received += 1;
      if (received === seq) allIn?.();
      const us = Math.max(1, Math.round((performance.timeOrigin + performance.now() - data.t) * 1000));
      if (phase === "before") before.recordValue(us);
      else if (phase === "during") during.recordValue(us);
    });
    sockets.push(listener);
    const publisher = await member(ports[ports.length - 1] as number, room);
    sockets.push(publisher);
    // Open loop: one publish every 1/rate s, whether or not the last one was answered.
    const timer = setInterval(
      () =>
        publisher.send(
          JSON.stringify({ op: "publish", room, data: { seq: ++seq, t: performance.timeOrigin + performance.now() } }),
        ),
      1000 / rate,
    );
    try {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      phase = "during";
      const run = await stormFromWorker({ ports, room, count: storm });
      const took = run.ms;
      phase = "after";
      await run.close();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      lines.push(
        "",
        `- join storm: ${storm} connections joined \`${room}\` (presence and join/leave events) in ${(took / 1000).toFixed(2)} s (${Math.round(storm / (took / 1000))} joins/s) while ${rate} messages/s were published to it`,
        `- the listener's message latency p50 / p99 / max: ${percentiles(before)} ms before the storm (${before.totalCount} messages), ${percentiles(during)} ms during it (${during.totalCount} messages)`,
      );
    } finally {
      clearInterval(timer);
    }
    // The last publications' way back, for at most 5 s (what never comes is reported below).
    await new Promise<void>((resolve) => {
      if (received >= seq) return resolve();
      allIn = resolve;
      setTimeout(resolve, 5000).unref();
    });
    lines.push(
      `- ${received} of ${seq} messages received, ${outOfOrder === 0 ? "all in order" : `${outOfOrder} out of order`}`,
    );
  } finally {
    for (const ws of sockets) ws.terminate();
  }
}

export async function runPresenceBench(argv: string[], invokedAs: string): Promise<number> {
  const { values } = parseArgs({ args: argv, options: OPTIONS, strict: true });
  if (values.help) {
    process.stdout.write(
      `Usage: ${invokedAs} presence [--instances 2] [--members 10000] [--queries 100] [--storm 1000] [--rate 200] [--out FILE]\n  ${PRESENCE_ABOUT}\n`,
    );
    return 0;
  }
  const bounded = (name: keyof typeof OPTIONS, max: number, min = 1): number => {
    const value = numberOption(String(values[name]), name, 0);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new UsageError(`--${name} must be an integer from ${min} to ${max}, not ${String(values[name])}`);
    }
    return value;
  };
  const instancesCount = bounded("instances", 8);
  const members = bounded("members", 15_000);
  const queries = bounded("queries", 10_000);
  const storm = bounded("storm", 15_000, 0);
  const rate = bounded("rate", 10_000);
  const logDir = mkdtempSync(join(tmpdir(), "crier-bench-presence-"));
  const redis = await startRedis(logDir);
  let instances: Instance[] = [];
  const lines: string[] = [];
  try {
    instances = await startInstances({
      target: "crier",
      count: instancesCount,
      processes: 1,
      redisUrl: redis.url,
      logDir,
      crierConfig: {
        namespaces: { big: { presence: true }, storm: { presence: true, joinLeave: true } },
        limits: { maxConnectionsPerIp: 100_000, commandsPerSecond: 100_000 },
      },
      socketioAdapter: "classic",
    });
    const machine = machineInfo();
    lines.push(
      `### presence: ${members} members over ${instancesCount} instances`,
      "",
      `\`${invokedAs} presence ${argv.join(" ")}\`, ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC, ` +
        `${machine.cores} cores (${machine.cpuModel}), Node ${machine.node}, Redis ${machine.redis}, ` +
        `load average ${loadavg()[0]?.toFixed(1)} at the start (other work on the machine)`,
      "",
    );
    await sizePhase(instances, members, queries, lines);
    if (storm > 0) await stormPhase(instances, storm, rate, lines);
    process.stdout.write(`${lines.join("\n")}\n`);
    if (values.out !== undefined) appendFileSync(values.out, `\n${lines.join("\n")}\n`);
    return 0;
  } finally {
    await stopInstances(instances);
    await stopRedis(redis);
    killAll();
    rmSync(logDir, { recursive: true, force: true });
  }
}
