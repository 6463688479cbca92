// Starts a real nats-server with JetStream as a child process on a free port,
// its store in a temporary directory, for tests of the NATS engine (ARCHITECTURE.md "Tests":
// no mocks of the backplane), and kills and restarts it for fault tests.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serverChild } from "./children.js";
import { freePort } from "./redis.js";

export interface StartNatsOptions {
  /** How long to wait for "Server is ready" (default 10 s). */
  readyTimeoutMs?: number;
  /** Extra nats-server arguments, e.g. ["--user", "u", "--pass", "p"]. */
  args?: string[];
  /** Also serve the HTTP monitoring endpoints (/connz, /subsz) on a free port. */
  monitor?: boolean;
}

export interface NatsProcess {
  readonly url: string;
  readonly port: number;
  /** Base URL of the monitoring endpoints, when asked for. */
  readonly monitorUrl?: string;
  /** Sends `signal` (default SIGKILL, a crash) and resolves once the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /**
   * Starts the server again on the same port (killing it first if it still runs),
   * with its JetStream store as it was, or empty with `{ wipe: true }`.
   */
  restart(options?: { wipe?: boolean }): Promise<void>;
  /** Stops the server for good and removes its store. Idempotent. */
  stop(): Promise<void>;
}

const NATS_BINARY = process.env.NATS_SERVER ?? "nats-server";
const READY_LINE = "Server is ready";

export async function startNats(options: StartNatsOptions = {}): Promise<NatsProcess> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), "crier-nats-"));
  const readyTimeoutMs = options.readyTimeoutMs ?? 10_000;
  const monitorPort = options.monitor === true ? await freePort() : undefined;
  const monitor = monitorPort === undefined ? [] : ["-m", String(monitorPort)];
  const args = ["-js", "-sd", dir, "-a", "127.0.0.1", "-p", String(port), ...monitor, ...(options.args ?? [])];

  const server = serverChild(NATS_BINARY, args, READY_LINE, `nats-server on port ${port}`, readyTimeoutMs);
  const { launch, kill } = server;
  let stopped = false;

  await launch();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    ...(monitorPort === undefined ? {} : { monitorUrl: `http://127.0.0.1:${monitorPort}` }),
    kill,
    async restart(restartOptions = {}) {
      if (stopped) throw new Error(`nats-server on port ${port} was stopped for good; start a new one`);
      await kill("SIGKILL");
      if (restartOptions.wipe === true) await rm(join(dir, "jetstream"), { recursive: true, force: true });
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
