// `npm run bench:fuzz`: --frames generated frames (default 1,000,000; JSON and
// MessagePack, valid-shaped and hostile, frames.ts) against one live crier
// with Redis, over --connections concurrent connections that each send a run
// of frames and are replaced when closed. Every frame must be answered as
// docs/protocol.md says: a frame with an id gets exactly one reply with that
// id (result or error) unless the connection closes with a protocol code; a
// frame that cannot be a command closes with its code; no `internal` error;
// and crier must not exit. At the end the instance must hold no connection
// and no room, and still serve.

import { appendFileSync } from "node:fs";
import { ERROR_CODES } from "crier-protocol";
import { decodeServerFrameMsgpack } from "crier-protocol/msgpack";
import WebSocket from "ws";
import { random } from "../../test/support/random.js";
import { type Codec, FrameGenerator, type Fuzzed } from "./frames.js";
import { commandLine, options, reportHeading, scrape, startLive } from "./live.js";

const opts = options(process.argv.slice(2), ["frames", "connections", "seed", "out"]);
const total = Number(opts.get("frames") ?? 1_000_000);
const concurrency = Number(opts.get("connections") ?? 32);
const seed = Number(opts.get("seed") ?? 20261201);
if (![total, concurrency, seed].every(Number.isFinite) || total > 20_000_000 || concurrency > 500) {
  process.stderr.write("npm run bench:fuzz -- [--frames 1000000] [--connections 32] [--seed N] [--out FILE]\n");
  process.exit(2);
}
const MAX_FRAME_BYTES = 4096;
const live = await startLive({
  allowAnonymous: true,
  clientSend: "all",
  // Replies leave at once: each connection waits for a reply before its next frame.
  delivery: { coalesceMs: 0 },
  namespaces: { chat: { history: { size: 20, ttl: "1m" }, presence: true, joinLeave: true } },
  limits: {
    maxFrameBytes: MAX_FRAME_BYTES,
    commandsPerSecond: 1_000_000,
    maxConnectionsPerIp: 100_000,
    connectionsPerSecondPerIp: 100_000,
    connectionsPerSecond: 100_000,
  },
});

// 1007: text that is not UTF-8 (ws, RFC 6455); 1009: past twice maxFrameBytes (ws's own bound).
const CLOSE_CODES = new Set([1007, 1009, 4001, 4002, 4003, 4005, 4009, 4508]);
const OPS = new Set([
  "connected",
  "subscribed",
  "unsubscribed",
  "ok",
  "presence",
  "history",
  "message",
  "direct",
  "join",
  "leave",
  "error",
  "ping",
]);
const stats = {
  frames: 0,
  owed: 0,
  answered: 0,
  closedWhileOwed: 0,
  mustClose: 0,
  closedAsRequired: 0,
  connections: 0,
  json: 0,
  msgpack: 0,
  replies: 0,
  errors: new Map<string, number>(),
  closes: new Map<number, number>(),
  kinds: new Map<string, number>(),
};
const violations: string[] = [];
function violation(text: string): void {
  if (violations.length < 50) violations.push(text);
  else if (violations.length === 50) violations.push("...");
}
const bump = <K>(map: Map<K, number>, key: K): void => {
  map.set(key, (map.get(key) ?? 0) + 1);
};

interface Reply {
  op: string;
  id?: number;
  code?: string;
  message?: string;
}

/** One connection: sends frames one at a time where a reply is owed, and checks what comes back. */
async function runConnection(
  gen: FrameGenerator,
  codec: Codec,
  budget: number,
  connectFirst: boolean,
): Promise<number> {
  const ws = new WebSocket(live.url, codec === "json" ? "crier.v1.json" : "crier.v1.msgpack");
  let closeCode: number | undefined;
  const replies = new Map<number, number>();
  let wake: (() => void) | undefined;
  const closed = new Promise<void>((resolve) =>
    ws.once("close", (code) => {
      closeCode = code;
      resolve();
      wake?.();
    }),
  );
  ws.on("error", () => {});
  ws.on("message", (data, isBinary) => {
    let frame: Reply | undefined;
    try {
      frame = (isBinary ? decodeServerFrameMsgpack(data as Buffer) : JSON.parse(String(data))) as Reply | undefined;
    } catch {
      frame = undefined;
    }
    if (frame === undefined || typeof frame.op !== "string") {
      violation(`undecodable server frame on ${codec}`);
      return;
    }
    stats.replies++;
    if (!OPS.has(frame.op)) violation(`unexpected op ${frame.op}`);
    if (frame.op === "ping")
      ws.send(codec === "json" ? '{"op":"pong"}' : Buffer.from([0x81, 0xa2, 0x6f, 0x70, 0xa4, 0x70, 0x6f, 0x6e, 0x67]));
    if (frame.op === "error") {
      bump(stats.errors, String(frame.code));
      if (!(ERROR_CODES as readonly string[]).includes(String(frame.code)))
        violation(`unknown error code ${frame.code}`);
      if (frame.code === "internal") violation(`internal error: ${frame.message}`);
    }
    if (typeof frame.id === "number") {
      replies.set(frame.id, (replies.get(frame.id) ?? 0) + 1);
      wake?.();
    }
  });
  await new Promise<void>((resolve) => {
    ws.once("open", () => resolve());
    ws.once("close", () => resolve());
  });
  stats.connections++;
  if (codec === "json") stats.json++;
  else stats.msgpack++;
  let sent = 0;
  /** Waits until `done()` or the connection closes; false on a 10 s silence. */
  const until = async (done: () => boolean): Promise<boolean> => {
    const deadline = Date.now() + 10_000;
    while (!done() && closeCode === undefined) {
      if (Date.now() > deadline) return false;
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 1000).unref();
      });
    }
    return true;
  };
  const owed: number[] = [];
  for (let i = 0; i < budget && closeCode === undefined && ws.readyState === ws.OPEN; i++) {
    const frame: Fuzzed = i === 0 && connectFirst ? gen.connect(codec) : gen.next(codec);
    ws.send(frame.data, { binary: frame.binary });
    sent++;
    bump(stats.kinds, frame.kind);
    if (frame.mustClose !== undefined) {
      stats.mustClose++;
      const must = frame.mustClose;
      if (!(await until(() => false))) violation(`no close after a ${frame.kind} frame`);
      else if (closeCode !== undefined && must.includes(closeCode)) stats.closedAsRequired++;
      else if (closeCode !== undefined && !CLOSE_CODES.has(closeCode))
        violation(`closed with ${closeCode} after ${frame.kind}`);
      else stats.closedAsRequired++;
      break;
    }
    if (frame.id !== undefined) {
      stats.owed++;
      owed.push(frame.id);
      const id = frame.id;
      if (!(await until(() => replies.has(id)))) violation(`no reply within 10 s to a ${frame.kind} frame (id ${id})`);
    }
  }
  if (closeCode === undefined) {
    ws.close(1000);
    await closed;
  }
  if (closeCode !== undefined && closeCode !== 1000 && closeCode !== 1005 && !CLOSE_CODES.has(closeCode)) {
    violation(`closed with ${closeCode}`);
  }
  bump(stats.closes, closeCode ?? 0);
  for (const id of owed) {
    const count = replies.get(id) ?? 0;
    if (count === 1) stats.answered++;
    else if (count > 1) violation(`${count} replies to id ${id}`);
    else if (closeCode !== undefined && closeCode !== 1000 && closeCode !== 1005) stats.closedWhileOwed++;
    else violation(`id ${id} never answered`);
  }
  return sent;
}

const started = performance.now();
let progressAt = 0;
const rand = random(seed);
await Promise.all(
  Array.from({ length: concurrency }, async (_, lane) => {
    const gen = new FrameGenerator(random(seed + lane + 1), MAX_FRAME_BYTES);
    while (stats.frames < total) {
      const codec: Codec = rand() < 0.5 ? "json" : "msgpack";
      const budget = Math.min(total - stats.frames, 20 + Math.floor(rand() * 400));
      const sent = await runConnection(gen, codec, budget, rand() < 0.85);
      stats.frames += sent;
      if (stats.frames - progressAt >= 100_000) {
        progressAt = stats.frames;
        process.stderr.write(
          `fuzz: ${stats.frames} frames, ${stats.connections} connections, ${violations.length} violations\n`,
        );
      }
    }
  }),
);
const seconds = (performance.now() - started) / 1000;

// After the run: nothing left behind, and the instance still serves.
const metrics = await scrape(live.httpUrl);
const leftConnections = metrics.get("crier_connections") ?? -1;
const leftRooms = metrics.get("crier_rooms") ?? -1;
const ready = (await fetch(`${live.httpUrl}/readyz`)).status;
const noCrash = await live.stop();
if (leftConnections !== 0) violation(`${leftConnections} connections left open`);
if (leftRooms !== 0) violation(`${leftRooms} rooms left in the index`);
if (ready !== 200) violation(`/readyz answered ${ready}`);
if (!noCrash) violation("crier exited during the run");

const top = (map: Map<string | number, number>, n = 12): string =>
  [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
const lines = [
  `frames sent              ${stats.frames} in ${seconds.toFixed(0)} s (${Math.round(stats.frames / seconds)}/s), seed ${seed}`,
  `connections              ${stats.connections} (${stats.json} JSON, ${stats.msgpack} MessagePack), ${concurrency} at a time`,
  `frames owed a reply      ${stats.owed}: answered exactly once ${stats.answered}, connection closed first (protocol code) ${stats.closedWhileOwed}`,
  `frames owed a close      ${stats.mustClose}: closed with a protocol code ${stats.closedAsRequired}`,
  `server frames received   ${stats.replies}; errors by code: ${top(stats.errors)}`,
  `closes by code           ${top(stats.closes)}`,
  `frame kinds              ${top(stats.kinds, 40)}`,
  `after the run            ${leftConnections} connections, ${leftRooms} rooms, /readyz ${ready}, crier exited on its own: ${noCrash ? "no" : "YES"}`,
  `violations               ${violations.length}${violations.length > 0 ? `\n  ${violations.join("\n  ")}` : ""}`,
];
const text = lines.join("\n");
process.stdout.write(`${text}\n`);
const out = opts.get("out");
if (out !== undefined) {
  const command = commandLine("bench:fuzz", process.argv.slice(2));
  appendFileSync(
    out,
    [...reportHeading("fuzz: generated frames against a live instance", command), "```", text, "```", ""].join("\n"),
  );
}
process.exit(violations.length === 0 ? 0 : 1);
