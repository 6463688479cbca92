// Starts a real redis-server as a child process on a free port, for tests that
// need the backplane (ARCHITECTURE.md "Tests": no mocks of the backplane), and kills it for fault tests.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { track } from "./children.js";

export interface StartRedisOptions {
  /** Port to listen on; a free one is picked when absent. */
  port?: number;
  /** How long to wait for "Ready to accept connections" (default 10 s). */
  readyTimeoutMs?: number;
  /** Extra redis-server arguments, e.g. ["--maxmemory", "10mb"]. */
  args?: string[];
}

export interface RedisProcess {
  readonly url: string;
  readonly port: number;
  /** Sends `signal` (default SIGKILL, a crash) and resolves once the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same port (stopping it first if it still runs). */
  restart(): Promise<void>;
  /** Stops the server for good and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

const REDIS_BINARY = process.env.REDIS_SERVER ?? "redis-server";
const READY_LINE = "Ready to accept connections";

/** A port nobody listens on right now (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error("could not find a free port"))));
    });
  });
}

export async function startRedis(options: StartRedisOptions = {}): Promise<RedisProcess> {
  const port = options.port ?? (await freePort());
  const dir = await mkdtemp(join(tmpdir(), "crier-redis-"));
  const readyTimeoutMs = options.readyTimeoutMs ?? 10_000;
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--save",
    "",
    "--appendonly",
    "no",
    "--daemonize",
    "no",
    "--loglevel",
    "notice",
    ...(options.args ?? []),
  ];

  let child: ChildProcess | undefined;
  let stopped = false;

  const launch = async (): Promise<void> => {
    const proc = spawn(REDIS_BINARY, args, { stdio: ["ignore", "pipe", "pipe"] });
    track(proc);
    child = proc;
    await waitReady(proc, port, readyTimeoutMs);
  };

  const kill = async (signal: NodeJS.Signals = "SIGKILL"): Promise<void> => {
    const proc = child;
    child = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill(signal);
    await exited;
  };

  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    kill,
    async restart() {
      if (stopped) throw new Error(`redis on port ${port} was stopped for good; start a new one`);
      await kill("SIGKILL");
      await launch();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await kill("SIGTERM");
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Resolves when the server logs that it accepts connections; rejects with its output if it exits or takes too long. */
function waitReady(proc: ChildProcess, port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = "";
    let settled = false;
    const finish = (error?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) {
        proc.kill("SIGKILL");
        reject(error);
      } else {
        resolve();
      }
    };
    const onData = (chunk: Buffer): void => {
      // Keep only the tail: enough to explain a failure, bounded however chatty the server is.
      output = (output + chunk.toString("utf8")).slice(-4000);
      if (output.includes(READY_LINE)) finish();
    };
    // The pipes must keep being read after ready, or a full pipe would block the server.
    proc.stdout?.on("data", onData);
    proc.stderr?.on("data", onData);
    proc.once("error", (err) => finish(new Error(`cannot run ${REDIS_BINARY}: ${err.message}`)));
    proc.once("exit", (code, signal) =>
      finish(new Error(`redis-server on port ${port} exited (${signal ?? code}) before ready:\n${output}`)),
    );
    const timer = setTimeout(
      () => finish(new Error(`redis-server on port ${port} not ready within ${timeoutMs} ms:\n${output}`)),
      timeoutMs,
    );
  });
}
