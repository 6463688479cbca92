// Starts a real redis-server as a child process on a free port, for tests that
// need the backplane (ARCHITECTURE.md "Tests": no mocks of the backplane), and kills it for fault tests.

import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serverChild } from "./children.js";

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

  const server = serverChild(REDIS_BINARY, args, READY_LINE, `redis-server on port ${port}`, readyTimeoutMs);
  const { launch, kill } = server;
  let stopped = false;

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
