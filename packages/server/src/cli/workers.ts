// `crier serve --workers N`: a primary process forks N workers (node:cluster)
// that serve the same port, one event loop per core. Each worker is a full
// crier instance; they share rooms and users through Redis like instances on
// different hosts. The primary only supervises: one API key for all, a
// crashed worker is replaced, and SIGTERM stops them all gracefully.

import cluster, { type Worker } from "node:cluster";
import { randomBytes } from "node:crypto";

/** Set in a worker's environment: its index, for its node id. */
export const WORKER_INDEX_ENV = "CRIER_WORKER_INDEX";

export function runPrimary(count: number, apiKey: string | undefined): Promise<number> {
  // One key for every worker: the HTTP API must not depend on which worker answers.
  const key = apiKey ?? randomBytes(24).toString("base64url");
  if (apiKey === undefined) {
    process.stderr.write(`crier: HTTP API key for this run (set CRIER_API_KEY to choose one): ${key}\n`);
  }
  const workers = new Map<Worker, number>();
  let stopping = false;
  const fork = (index: number): void => {
    const worker = cluster.fork({ CRIER_API_KEY: key, [WORKER_INDEX_ENV]: String(index) });
    workers.set(worker, index);
  };
  return new Promise<number>((resolve) => {
    cluster.on("exit", (worker, code, signal) => {
      const index = workers.get(worker);
      workers.delete(worker);
      if (stopping) {
        if (workers.size === 0) resolve(0);
        return;
      }
      process.stderr.write(`crier: worker ${index} exited (${signal ?? `code ${code}`}); starting a new one\n`);
      // A worker that cannot start at all (bad config, port taken) fails fast: do not spin.
      const restart = setTimeout(() => fork(index ?? 0), 1000);
      restart.unref();
    });
    for (let index = 0; index < count; index++) fork(index);
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        process.stderr.write(`crier: ${signal} again, killing the workers\n`);
        for (const worker of workers.keys()) worker.process.kill("SIGKILL");
        resolve(1);
        return;
      }
      stopping = true;
      if (workers.size === 0) resolve(0);
      for (const worker of workers.keys()) worker.process.kill("SIGTERM");
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
