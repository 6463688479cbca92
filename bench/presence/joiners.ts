// The join storm's joiners, in a worker thread: it opens `count` members of the
// room as fast as OPEN_CONCURRENCY allows, reports how long that took, and keeps
// them open until told to close.

import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import type { WebSocket } from "ws";
import { fill } from "./members.js";

interface StormInit {
  ports: number[];
  room: string;
  count: number;
}

const ENTRY = new URL("./joiners.ts", import.meta.url).href;
const BOOTSTRAP = `import("tsx/esm/api").then(({ register }) => { register(); return import(${JSON.stringify(ENTRY)}); });`;

/** Runs a storm in a worker; resolves with its duration (ms) and a function that closes its members. */
export function stormFromWorker(init: StormInit): Promise<{ ms: number; close: () => Promise<number> }> {
  const worker = new Worker(BOOTSTRAP, { eval: true, workerData: init });
  return new Promise((resolve, reject) => {
    worker.once("error", reject);
    worker.once("message", (message: { ms?: number; error?: string }) => {
      if (message.error !== undefined || message.ms === undefined) {
        void worker.terminate();
        reject(new Error(`join storm failed: ${message.error ?? "no duration"}`));
        return;
      }
      resolve({ ms: message.ms, close: () => worker.terminate() });
    });
  });
}

if (!isMainThread && parentPort !== null) {
  const { ports, room, count } = workerData as StormInit;
  const port = parentPort;
  const sockets: WebSocket[] = [];
  const started = performance.now();
  fill(ports, room, count, sockets).then(
    () => port.postMessage({ ms: performance.now() - started }),
    (error: unknown) => port.postMessage({ error: error instanceof Error ? error.message : String(error) }),
  );
}
