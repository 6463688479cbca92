// Starts the servers under test as separate processes: crier instances (its
// CLI, as users run it) or the Socket.IO peer (bench/peers/socketio-server.ts),
// each on a free port of 127.0.0.1 and sharing one Redis. An instance may be
// several processes on its port (crier serve --workers N, the peer under
// node:cluster): one process cannot open more than `ulimit -n` files.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TargetName } from "../generator/spec.js";
import { freePort, type Started, start, stop, waitUntil } from "./processes.js";

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CRIER_CLI = join(REPO_ROOT, "packages/server/src/cli.ts");
const SOCKETIO_SERVER = join(REPO_ROOT, "bench/peers/socketio-server.ts");
const FLOOR_SERVER = join(REPO_ROOT, "bench/peers/floor-server.ts");

/** The HTTP API key of the crier instances the bench starts. */
export const BENCH_API_KEY = "bench-api-key";

export interface Instance extends Started {
  /** "a", "b", ...: the node id. */
  name: string;
  port: number;
}

export interface InstancesOptions {
  target: TargetName;
  count: number;
  /** Processes per instance, sharing its port. */
  processes: number;
  redisUrl: string;
  logDir: string;
  /** crier: configuration file contents (limits, JWT, ...). */
  crierConfig: Record<string, unknown>;
  /** Socket.IO: the Redis adapter to use. */
  socketioAdapter: "classic" | "sharded";
  /** When set, every instance writes a V8 CPU profile there on exit (TARGET-NAME.cpuprofile). */
  cpuProfDir?: string;
}

export async function startInstances(options: InstancesOptions): Promise<Instance[]> {
  const instances: Instance[] = [];
  try {
    for (let i = 0; i < options.count; i++) instances.push(await startOne(options, String.fromCharCode(97 + i)));
    return instances;
  } catch (error) {
    await stopInstances(instances);
    throw error;
  }
}

/** Stops instances gracefully (so they write their CPU profiles) and waits for them to exit. */
export async function stopInstances(instances: Instance[]): Promise<void> {
  await Promise.all(instances.map((instance) => stop(instance.child, 10_000)));
}

async function startOne(options: InstancesOptions, name: string): Promise<Instance> {
  const port = await freePort();
  const logFile = join(options.logDir, `${options.target}-${name}.log`);
  const node = ["--conditions=crier-source", "--import", "tsx"];
  if (options.cpuProfDir !== undefined) {
    const file = `${options.target}-${name}.cpuprofile`;
    node.push("--cpu-prof", "--cpu-prof-dir", options.cpuProfDir, "--cpu-prof-name", file);
  }
  let args: string[];
  if (options.target === "crier") {
    const configFile = join(options.logDir, "crier-config.json");
    writeFileSync(configFile, JSON.stringify(options.crierConfig, null, 2));
    args = [
      ...node,
      CRIER_CLI,
      "serve",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--redis",
      options.redisUrl,
      "--api-key",
      BENCH_API_KEY,
      "--node-id",
      name,
      "--log-level",
      "warn",
      "--allow-anonymous",
      "--config",
      configFile,
      ...(options.processes > 1 ? ["--workers", String(options.processes)] : []),
    ];
  } else if (options.target === "floor") {
    args = [...node, FLOOR_SERVER, "--port", String(port), "--redis", options.redisUrl];
  } else {
    args = [
      ...node,
      SOCKETIO_SERVER,
      "--port",
      String(port),
      "--redis",
      options.redisUrl,
      "--adapter",
      options.socketioAdapter,
      "--workers",
      String(options.processes),
    ];
  }
  const started = start(process.execPath, args, logFile, REPO_ROOT);
  const instance: Instance = { ...started, name, port };
  try {
    const isReady =
      options.target === "crier" && options.processes > 1
        ? () => workersReady(port, name, options.processes)
        : () => ready(port);
    await waitUntil(isReady, started, `${options.target} instance ${name}`);
  } catch (error) {
    await stop(started.child, 1000);
    throw error;
  }
  return instance;
}

async function ready(port: number): Promise<boolean> {
  const response = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) });
  await response.body?.cancel();
  return response.status === 200;
}

/**
 * crier with workers: /readyz answers from whichever worker takes the
 * request, so wait until every worker (node id NAME-wI) is in the cluster.
 */
async function workersReady(port: number, name: string, workers: number): Promise<boolean> {
  if (!(await ready(port))) return false;
  const response = await fetch(`http://127.0.0.1:${port}/api/info`, {
    headers: { authorization: `Bearer ${BENCH_API_KEY}` },
    signal: AbortSignal.timeout(1000),
  });
  if (response.status !== 200) {
    await response.body?.cancel();
    return false;
  }
  const info = (await response.json()) as { nodes?: { id?: unknown }[] };
  const ids = new Set((info.nodes ?? []).map((node) => node.id));
  return Array.from({ length: workers }, (_, i) => `${name}-w${i}`).every((id) => ids.has(id));
}
