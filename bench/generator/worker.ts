// A generator worker: opens its share of the scenario's connections, publishes
// its share of the rate, counts and times what its connections receive, and
// answers the orchestrator's requests (messages.ts). It runs as a worker
// thread, or as a child process when one process's open-file limit cannot
// hold all the connections (then its WorkerInit is the first IPC message).

import { parentPort, workerData } from "node:worker_threads";
import { crierDialect } from "./crier-dialect.js";
import type { Dialect } from "./dialect.js";
import type { Envelope, WorkerReply, WorkerRequest } from "./messages.js";
import { HttpOutlet, type Outlet, wsOutlet } from "./outlet.js";
import { PayloadBuilder } from "./payload.js";
import { RawWs } from "./raw-ws.js";
import { DeliveryRecorder } from "./recorder.js";
import { PublishScheduler } from "./scheduler.js";
import { socketioDialect } from "./socketio-dialect.js";
import type { ConnSpec, WorkerInit } from "./spec.js";

const MAX_ERROR_SAMPLES = 5;
/** HTTP publishing: requests pending at once per publisher before publications are refused. */
const MAX_HTTP_IN_FLIGHT = 64;
/** Closing: how long connections get to finish the close handshake before they are dropped. */
const CLOSE_GRACE_MS = 2000;

interface Link {
  init: WorkerInit;
  send(envelope: Envelope<WorkerReply>): void;
  onRequest(listener: (envelope: Envelope<WorkerRequest>) => void): void;
  /** Lets the worker end once its connections are closed. */
  close(): void;
}

async function linkToOrchestrator(): Promise<Link> {
  const thread = parentPort;
  if (thread !== null) {
    return {
      init: workerData as WorkerInit,
      send: (envelope) => thread.postMessage(envelope),
      onRequest: (listener) => thread.on("message", listener),
      close: () => thread.close(),
    };
  }
  const send = process.send?.bind(process);
  if (send === undefined) throw new Error("bench/generator/worker.ts runs as a worker thread or a forked process");
  const first = await new Promise<unknown>((resolve) => process.once("message", resolve));
  return {
    init: first as WorkerInit,
    send: (envelope) => send(envelope),
    onRequest: (listener) => process.on("message", listener),
    close: () => process.disconnect(),
  };
}

const link = await linkToOrchestrator();
const init = link.init;

const dialect: Dialect = init.target === "socketio" ? socketioDialect : crierDialect;
const readBuffer = Buffer.allocUnsafe(64 * 1024);
const recorder = new DeliveryRecorder();
const sockets: (RawWs | undefined)[] = new Array(init.conns.length);
let closing = false;
let errors = 0;
const errorSamples: string[] = [];
const closes: Record<string, number> = {};

function noteError(message: string): void {
  errors++;
  if (errorSamples.length < MAX_ERROR_SAMPLES) errorSamples.push(message);
}

const events = { error: noteError };

async function open(spec: ConnSpec, index: number): Promise<void> {
  const endpoint = init.endpoints[spec.instance];
  if (endpoint === undefined) throw new Error(`no endpoint ${spec.instance}`);
  const ws = new RawWs({
    host: endpoint.host,
    port: endpoint.port,
    tls: endpoint.tls,
    path: endpoint.path ?? dialect.path,
    ...(spec.localAddress === undefined ? {} : { localAddress: spec.localAddress }),
    readBuffer,
    sink: recorder,
    timeoutMs: init.timeoutMs,
  });
  // Listed while it opens, so that closing the worker also drops connections still setting up.
  sockets[index] = ws;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not ready within ${init.timeoutMs} ms`)), init.timeoutMs);
  });
  try {
    await Promise.race([dialect.setup(ws, spec, events), timeout]);
  } catch (error) {
    ws.destroy();
    sockets[index] = undefined;
    throw error;
  } finally {
    clearTimeout(timer);
  }
  // Installed after setup: a close before it is a setup failure, counted there.
  ws.onClose = (code) => {
    if (closing) return;
    const key = String(code);
    closes[key] = (closes[key] ?? 0) + 1;
  };
}

/** Opens every connection, `concurrency` at a time. */
async function openAll(): Promise<{ connected: number; failed: number; firstError?: string }> {
  let next = 0;
  let connected = 0;
  let failed = 0;
  let firstError: string | undefined;
  const lane = async (): Promise<void> => {
    while (!closing && next < init.conns.length) {
      const index = next++;
      const spec = init.conns[index];
      if (spec === undefined) continue;
      try {
        await open(spec, index);
        connected++;
      } catch (error) {
        failed++;
        firstError ??= (error as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, init.concurrency) }, lane));
  return firstError === undefined ? { connected, failed } : { connected, failed, firstError };
}

const publishers: { out: Outlet; spec: (typeof init.publishers)[number] }[] = [];
let scheduler: PublishScheduler | undefined;

/** A publisher's outlet: its connection, or with an API key the HTTP API of the endpoint it is connected to. */
function outletOf(ws: RawWs, spec: ConnSpec): Outlet {
  const origin = init.endpoints[spec.instance]?.api;
  if (init.apiKey === undefined || origin === undefined) return wsOutlet(ws, dialect);
  return new HttpOutlet(origin, init.apiKey, MAX_HTTP_IN_FLIGHT, noteError);
}

/** Closes every connection with a close handshake, then drops those that did not finish in time. */
async function closeAll(): Promise<void> {
  closing = true;
  scheduler?.stop();
  await Promise.all(sockets.map((ws) => ws?.close(CLOSE_GRACE_MS)));
}

function handle(request: Exclude<WorkerRequest, { type: "close" }>): WorkerReply {
  const publishing = scheduler;
  switch (request.type) {
    case "rate":
      publishing?.setRate(request.rate, request.tag);
      return { type: "ok" };
    case "begin":
      publishing?.retag(request.tag);
      recorder.begin(request.tag);
      return { type: "ok" };
    case "end":
      publishing?.stop();
      recorder.end();
      return {
        type: "end",
        sent: publishing?.sent ?? 0,
        expected: publishing?.expected ?? 0,
        windowDeliveries: recorder.windowDeliveries,
        skipped: publishing?.skipped ?? 0,
        unsent: publishing?.unsent ?? 0,
      };
    case "progress":
      return { type: "progress", delivered: recorder.delivered };
    case "collect":
      return {
        type: "collect",
        delivered: recorder.delivered,
        histogram: recorder.encodedHistogram(),
        errors,
        errorSamples: [...errorSamples],
        closes: { ...closes },
      };
  }
}

function reply(seq: number, body: WorkerReply): void {
  link.send({ seq, body });
}

link.onRequest((envelope) => {
  const request = envelope.body;
  if (request.type === "close") {
    closeAll().then(() => {
      reply(envelope.seq, { type: "ok" });
      link.close();
    });
    return;
  }
  try {
    reply(envelope.seq, handle(request));
  } catch (error) {
    reply(envelope.seq, { type: "fatal", message: (error as Error).stack ?? String(error) });
  }
});

// Sequence 0 is the ready report, sent once every connection is set up.
openAll().then(
  (result) => {
    for (const spec of init.publishers) {
      const ws = sockets[spec.conn];
      const conn = init.conns[spec.conn];
      if (ws !== undefined && conn !== undefined) publishers.push({ out: outletOf(ws, conn), spec });
    }
    scheduler = new PublishScheduler(publishers, new PayloadBuilder(init.payloadBytes));
    reply(0, { type: "ready", ...result });
  },
  (error: unknown) => reply(0, { type: "fatal", message: (error as Error).stack ?? String(error) }),
);
