// The orchestrator's side of the generator: starts workers with their share
// of connections and publishers, and sends requests to all of them. Workers
// are threads of this process, or child processes when the connections would
// not fit under one process's open-file limit (idle with 50,000 connections).
// Every pool is listed until closed, so that Ctrl-C can close its connections.

import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { Envelope, ReadyReply, WorkerReply, WorkerRequest } from "./messages.js";
import type { ConnSpec, Endpoint, PublisherSpec, TargetName, WorkerInit } from "./spec.js";

// Workers do not inherit `--import tsx` on Node 20: a small ESM bootstrap
// registers tsx in the thread and then loads the TypeScript entry.
const ENTRY = new URL("./worker.ts", import.meta.url).href;
const BOOTSTRAP = `import("tsx/esm/api").then(({ register }) => { register(); return import(${JSON.stringify(ENTRY)}); });`;
const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** File descriptors a generator process keeps for itself (stdio, IPC, epoll, module files, ...). */
const FD_RESERVE = 200;

export interface PoolOptions {
  target: TargetName;
  /** Where connections go; ConnSpec.instance indexes this. */
  endpoints: Endpoint[];
  conns: ConnSpec[];
  /** Publishers, `conn` indexing `conns`. */
  publishers: PublisherSpec[];
  workers: number;
  /**
   * The open-file limit of one process: when the connections do not fit,
   * every worker is a child process and there are enough of them.
   */
  fdLimit: number;
  payloadBytes: number;
  concurrency: number;
  timeoutMs: number;
  /** Publish through the HTTP API of each publisher's endpoint with this key, instead of its connection. */
  apiKey?: string;
}

/** A worker thread or a child process, as the pool talks to it. */
interface Channel {
  post(envelope: Envelope<WorkerRequest> | WorkerInit): void;
  /** The child's pid; undefined for a thread, whose CPU is this process's. */
  pid: number | undefined;
  terminate(): Promise<unknown>;
}

interface Thread {
  channel: Channel;
  /** Share of the publishers, to split the rate. */
  share: number;
  waiting: Map<number, { resolve: (reply: WorkerReply) => void; reject: (error: Error) => void }>;
  exited: boolean;
}

const openPools = new Set<GeneratorPool>();

/** Closes every pool still open (Ctrl-C): each connection gets a close handshake. */
export async function closeAllPools(): Promise<void> {
  await Promise.all([...openPools].map((pool) => pool.close()));
}

export class GeneratorPool {
  private readonly threads: Thread[] = [];
  private seq = 0;
  private closed: Promise<void> | undefined;

  /** Starts the workers; resolves once every connection is set up (or failed). */
  static async start(options: PoolOptions): Promise<{ pool: GeneratorPool; ready: ReadyReply }> {
    const pool = new GeneratorPool();
    openPools.add(pool);
    const budget = Math.max(1, options.fdLimit - FD_RESERVE);
    const processes = options.conns.length > budget;
    const needed = Math.ceil(options.conns.length / budget);
    const count = Math.max(1, Math.min(Math.max(options.workers, processes ? needed : 1), options.conns.length));
    const inits: WorkerInit[] = Array.from({ length: count }, () => ({
      target: options.target,
      endpoints: options.endpoints,
      conns: [],
      publishers: [],
      payloadBytes: options.payloadBytes,
      concurrency: options.concurrency,
      timeoutMs: options.timeoutMs,
      ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }),
    }));
    // Connection i goes to worker i % count; its publishers follow it.
    const local = new Map<number, { worker: number; index: number }>();
    options.conns.forEach((conn, i) => {
      const init = inits[i % count] as WorkerInit;
      local.set(i, { worker: i % count, index: init.conns.length });
      init.conns.push(conn);
    });
    for (const publisher of options.publishers) {
      const where = local.get(publisher.conn);
      if (where === undefined) throw new Error(`publisher on unknown connection ${publisher.conn}`);
      (inits[where.worker] as WorkerInit).publishers.push({ ...publisher, conn: where.index });
    }
    const total = Math.max(1, options.publishers.length);
    const readies = inits.map((init) => pool.spawn(init, init.publishers.length / total, processes));
    try {
      const replies = await Promise.all(readies);
      const ready: ReadyReply = { type: "ready", connected: 0, failed: 0 };
      for (const reply of replies) {
        ready.connected += reply.connected;
        ready.failed += reply.failed;
        if (ready.firstError === undefined && reply.firstError !== undefined) ready.firstError = reply.firstError;
      }
      return { pool, ready };
    } catch (error) {
      await pool.terminate();
      throw error;
    }
  }

  /** Pids of the generator's child processes (none when its workers are threads). */
  pids(): number[] {
    return this.threads.flatMap((thread) =>
      thread.exited || thread.channel.pid === undefined ? [] : [thread.channel.pid],
    );
  }

  private spawn(init: WorkerInit, share: number, asProcess: boolean): Promise<ReadyReply> {
    const worker: Worker | ChildProcess = asProcess
      ? fork(fileURLToPath(ENTRY), [], {
          cwd: REPO_ROOT,
          execArgv: ["--conditions=crier-source", "--import", "tsx"],
          serialization: "advanced",
          stdio: ["ignore", "inherit", "inherit", "ipc"],
        })
      : new Worker(BOOTSTRAP, { eval: true, workerData: init });
    const channel: Channel =
      worker instanceof Worker
        ? { post: (message) => worker.postMessage(message), pid: undefined, terminate: () => worker.terminate() }
        : {
            post: (message) => worker.send(message),
            pid: worker.pid,
            terminate: () => {
              if (worker.exitCode !== null || worker.signalCode !== null) return Promise.resolve();
              const gone = new Promise((resolve) => worker.once("exit", resolve));
              worker.kill("SIGKILL");
              return gone;
            },
          };
    const thread: Thread = { channel, share, waiting: new Map(), exited: false };
    this.threads.push(thread);
    const ready = new Promise<WorkerReply>((resolve, reject) => thread.waiting.set(0, { resolve, reject }));
    worker.on("message", (envelope: Envelope<WorkerReply>) => {
      const waiter = thread.waiting.get(envelope.seq);
      if (waiter === undefined) return;
      thread.waiting.delete(envelope.seq);
      if (envelope.body.type === "fatal") waiter.reject(new Error(`generator worker: ${envelope.body.message}`));
      else waiter.resolve(envelope.body);
    });
    const fail = (error: Error): void => {
      for (const waiter of thread.waiting.values()) waiter.reject(error);
      thread.waiting.clear();
    };
    worker.on("error", (error) => fail(error));
    worker.on("exit", (code: number | null) => {
      thread.exited = true;
      fail(new Error(`generator worker exited with ${code}`));
    });
    if (asProcess) channel.post(init);
    return ready.then((reply) => {
      if (reply.type !== "ready") throw new Error(`generator worker: unexpected ${reply.type}`);
      return reply;
    });
  }

  /** Sends a request to every worker (`build` gets the worker's share of the publishers) and gathers the replies. */
  async all<T extends WorkerReply>(build: (share: number) => WorkerRequest): Promise<T[]> {
    const seq = ++this.seq;
    return Promise.all(
      this.threads.map(
        (thread) =>
          new Promise<T>((resolve, reject) => {
            if (thread.exited) {
              reject(new Error("generator worker has exited"));
              return;
            }
            thread.waiting.set(seq, { resolve: (reply) => resolve(reply as T), reject });
            const envelope: Envelope<WorkerRequest> = { seq, body: build(thread.share) };
            thread.channel.post(envelope);
          }),
      ),
    );
  }

  /** Closes every connection (close handshake, then drop) and stops the threads. Idempotent. */
  close(): Promise<void> {
    this.closed ??= this.closeNow();
    return this.closed;
  }

  private async closeNow(): Promise<void> {
    try {
      // Unref'd: the grace period must not keep a process that is done (a test) alive for its length.
      await Promise.race([
        this.all(() => ({ type: "close" })),
        new Promise((resolve) => setTimeout(resolve, 5000).unref()),
      ]);
    } catch {
      // A worker that already died has nothing left to close.
    }
    await this.terminate();
  }

  private async terminate(): Promise<void> {
    openPools.delete(this);
    await Promise.all(this.threads.map((thread) => (thread.exited ? undefined : thread.channel.terminate())));
  }
}
