// One live crier instance for the long runs (soak, fuzz, flood): a private
// redis-server and crier as a separate process, as users run it, on free
// ports of 127.0.0.1; and what those runs read from it and write down.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Instance, startInstances, stopInstances } from "../cluster/instances.js";
import { killAll } from "../cluster/processes.js";
import { type RedisServer, startRedis, stopRedis } from "../cluster/redis.js";
import { machineInfo } from "../machine.js";

export interface Live {
  instance: Instance;
  redis: RedisServer;
  url: string;
  httpUrl: string;
  logDir: string;
  /** Stops crier and Redis; true when crier had not exited on its own before (no crash). */
  stop(): Promise<boolean>;
}

export async function startLive(crierConfig: Record<string, unknown>): Promise<Live> {
  const logDir = mkdtempSync(join(tmpdir(), "crier-long-"));
  const redis = await startRedis(logDir);
  process.once("SIGINT", () => {
    killAll();
    process.exit(130);
  });
  const [instance] = await startInstances({
    target: "crier",
    count: 1,
    processes: 1,
    redisUrl: redis.url,
    logDir,
    crierConfig,
    socketioAdapter: "classic",
  });
  if (instance === undefined) throw new Error("no crier instance started");
  return {
    instance,
    redis,
    url: `ws://127.0.0.1:${instance.port}/ws`,
    httpUrl: `http://127.0.0.1:${instance.port}`,
    logDir,
    async stop() {
      const alive = instance.child.exitCode === null && instance.child.signalCode === null;
      await stopInstances([instance]);
      await stopRedis(redis);
      if (alive) rmSync(logDir, { recursive: true, force: true });
      return alive;
    },
  };
}

/** The numbers of a Prometheus text page, by metric name (first sample of each, labels ignored). */
export async function scrape(httpUrl: string, apiKey?: string): Promise<Map<string, number>> {
  const response = await fetch(`${httpUrl}/metrics`, {
    headers: apiKey === undefined ? {} : { Authorization: `Bearer ${apiKey}` },
    signal: AbortSignal.timeout(5000),
  });
  const values = new Map<string, number>();
  for (const line of (await response.text()).split("\n")) {
    if (line.startsWith("#") || line === "") continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (match?.[1] === undefined || match[3] === undefined) continue;
    const name = match[2] === undefined ? match[1] : `${match[1]}${match[2]}`;
    values.set(name, Number(match[3]));
    if (!values.has(match[1])) values.set(match[1], Number(match[3]));
  }
  return values;
}

/** The heading lines of a committed report: what ran, where and when. */
export function reportHeading(title: string, command: string): string[] {
  const m = machineInfo();
  return [
    `## ${title}`,
    "",
    `${new Date().toISOString()}; ${m.cores} cores (${m.cpuModel}), ${m.memoryGiB} GiB, Linux ${m.kernel}, ` +
      `Node ${m.node}, Redis ${m.redis}.`,
    "",
    "```",
    `$ ${command}`,
    "```",
    "",
  ];
}

/** Least-squares slope of y over x. */
export function slope(points: readonly { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((t, p) => t + p.x, 0) / n;
  const my = points.reduce((t, p) => t + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** `--name value` options of a long run; unknown names are refused. */
export function options(argv: readonly string[], known: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    const name = arg.replace(/^--/, "");
    if (!arg.startsWith("--") || !known.includes(name)) {
      throw new Error(`unknown option ${arg}; options: ${known.map((k) => `--${k}`).join(" ")}`);
    }
    const next = argv[i + 1];
    if (next === undefined || next.startsWith("--")) throw new Error(`--${name} needs a value`);
    out.set(name, next);
    i++;
  }
  return out;
}

/** The command as a reader would run it again: the npm script and its options, without --out. */
export function commandLine(script: string, argv: readonly string[]): string {
  const kept = argv.filter((arg, i) => arg !== "--out" && argv[i - 1] !== "--out");
  return `npm run ${script}${kept.length > 0 ? ` -- ${kept.join(" ")}` : ""}`;
}
