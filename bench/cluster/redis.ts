// A private engine for one run: one redis-server, or a Redis Cluster of three
// masters (no replicas: the bench measures what carrying the load costs, not
// replication), on free ports of 127.0.0.1, nothing saved to disk, killed
// with the run. Never the machine's own Redis.

import { execFile, execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { startNatsServer, stopNatsServer } from "./nats.js";
import { freePort, type Started, start, stop, waitUntil } from "./processes.js";

export interface RedisServer extends Started {
  port: number;
  url: string;
}

/** The engines the bench can start (NATS: bench/cluster/nats.ts). */
export const ENGINE_NAMES = ["redis", "redis-cluster", "nats"] as const;
export type EngineName = (typeof ENGINE_NAMES)[number];

/** A running engine: the URL crier and the peers take (`--redis`, or `--nats` for NATS), and the processes to measure. */
export interface EngineServers {
  engine: EngineName;
  url: string;
  /** One per engine process (a cluster's nodes), for per-node CPU. */
  pids: number[];
  stop(): Promise<void>;
}

const run = promisify(execFile);

export async function startEngine(engine: EngineName, logDir: string): Promise<EngineServers> {
  if (engine === "redis") {
    const redis = await startRedis(logDir);
    return { engine, url: redis.url, pids: [redis.pid], stop: () => stopRedis(redis) };
  }
  if (engine === "nats") {
    const nats = await startNatsServer(logDir);
    return { engine, url: nats.url, pids: [nats.pid], stop: () => stopNatsServer(nats) };
  }
  const nodes: RedisServer[] = [];
  try {
    for (let i = 0; i < 3; i++) nodes.push(await startRedis(logDir, ["--cluster-enabled", "yes"]));
    const addresses = nodes.map((node) => `127.0.0.1:${node.port}`);
    await run("redis-cli", ["--cluster", "create", ...addresses, "--cluster-replicas", "0", "--cluster-yes"]);
    const [first] = nodes;
    if (first !== undefined) {
      await waitUntil(
        async () =>
          (await run("redis-cli", ["-p", String(first.port), "CLUSTER", "INFO"])).stdout.includes("cluster_state:ok"),
        first,
        "the Redis Cluster",
      );
    }
  } catch (error) {
    await Promise.all(nodes.map(stopRedis));
    throw error;
  }
  return {
    engine,
    url: `redis+cluster://${nodes.map((node) => `127.0.0.1:${node.port}`).join(",")}`,
    pids: nodes.map((node) => node.pid),
    stop: async () => {
      await Promise.all(nodes.map(stopRedis));
    },
  };
}

export async function startRedis(logDir: string, extraArgs: string[] = []): Promise<RedisServer> {
  const port = await freePort();
  // Each server its own directory: a cluster node writes nodes.conf there.
  const dir = join(logDir, `redis-${port}`);
  mkdirSync(dir, { recursive: true });
  const started = start(
    "redis-server",
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--loglevel",
      "warning",
      "--dir",
      dir,
      ...extraArgs,
    ],
    join(logDir, `redis-${port}.log`),
    logDir,
  );
  await waitUntil(() => ping(port), started, "redis-server");
  return { ...started, port, url: `redis://127.0.0.1:${port}` };
}

export function stopRedis(redis: RedisServer): Promise<void> {
  return stop(redis.child, 3000);
}

/** `redis-server --version`, e.g. "7.0.15"; "unknown" when it cannot be run. */
export function redisVersion(): string {
  try {
    const out = execFileSync("redis-server", ["--version"], { encoding: "utf8" });
    return /v=(\S+)/.exec(out)?.[1] ?? out.trim();
  } catch {
    return "unknown";
  }
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (data) => done(data.toString().startsWith("+PONG")));
  });
}
