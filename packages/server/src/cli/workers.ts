// `crier serve --workers N`: a primary process forks N workers (node:cluster)
// that serve the same port, one event loop per core. Each worker is a full
// crier instance; they share rooms and users through Redis like instances on
// different hosts. The primary only supervises: one API key for all, a
// crashed worker is replaced, workers that keep failing to start stop
// everything, and SIGTERM stops them all gracefully.

import cluster, { type Worker } from "node:cluster";
import { randomBytes } from "node:crypto";

/** Set in a worker's environment: its index, for its node id. */
export const WORKER_INDEX_ENV = "CRIER_WORKER_INDEX";

/** Start failures in a row after which the primary gives up (bad config, port taken). */
const MAX_START_FAILURES = 3;

export function runPrimary(count: number, apiKey: string | undefined): Promise<number> {
  // One key for every worker: the HTTP API must not depend on which worker answers.
  const key = apiKey ?? randomBytes(24).toString("base64url");
  if (apiKey === undefined) {
    process.stderr.write(`crier: HTTP API key for this run (set CRIER_API_KEY to choose one): ${key}\n`);
  }
  // A worker that exits before it listened failed to start. Known by the cluster's
  // "listening" event, not by how long it ran: a loaded machine may take seconds to fail.
  const workers = new Map<Worker, { index: number; listened: boolean }>();
  let stopping = false;
  let startFailures = 0;
  const fork = (index: number): void => {
    const worker = cluster.fork({ CRIER_API_KEY: key, [WORKER_INDEX_ENV]: String(index) });
    workers.set(worker, { index, listened: false });
  };
  return new Promise<number>((resolve) => {
    const finish = (): void => resolve(startFailures >= MAX_START_FAILURES ? 1 : 0);
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        process.stderr.write(`crier: ${signal} again, killing the workers\n`);
        for (const worker of workers.keys()) worker.process.kill("SIGKILL");
        resolve(1);
        return;
      }
      stopping = true;
      if (workers.size === 0) finish();
      for (const worker of workers.keys()) worker.process.kill("SIGTERM");
    };
    cluster.on("listening", (worker) => {
      const entry = workers.get(worker);
      if (entry !== undefined) entry.listened = true;
    });
    cluster.on("exit", (worker, code, signal) => {
      const entry = workers.get(worker);
      workers.delete(worker);
      if (stopping) {
        if (workers.size === 0) finish();
        return;
      }
      const index = entry?.index ?? 0;
      const how = signal ?? `code ${code}`;
      startFailures = entry !== undefined && !entry.listened ? startFailures + 1 : 0;
      if (startFailures >= MAX_START_FAILURES) {
        // Retrying will not help (bad config, port taken): say so and stop.
        process.stderr.write(`crier: workers keep failing to start (last: worker ${index}, ${how}); stopping\n`);
        stop("SIGTERM");
        return;
      }
      process.stderr.write(`crier: worker ${index} exited (${how}); starting a new one\n`);
      // Not unref'd: with every worker gone, this timer is what keeps the primary alive.
      setTimeout(() => fork(index), 1000);
    });
    for (let index = 0; index < count; index++) fork(index);
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
