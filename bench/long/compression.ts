// `npm run bench:compression`: what permessage-deflate (delivery.compression)
// saves on the wire and costs in CPU. For each payload kind (a chat line, a
// dashboard update, a document snapshot: JSON as such apps send it) and each
// setting (off, level 1, level 6, and level 1 with no minimum size), one live crier serves --clients WebSocket
// clients (ws, which offers the extension) subscribed to one room, and a
// publisher sends --messages publications at --rate per second. Reported per
// delivery: bytes read off the clients' TCP sockets (frames and their
// headers), and crier's CPU per publication. Every message is checked to
// arrive intact; the run stops by itself.

import { appendFileSync } from "node:fs";
import type { Socket } from "node:net";
import { loadavg } from "node:os";
import WebSocket from "ws";
import { cpuBetween, sample } from "../proc.js";
import { commandLine, options, reportHeading, scrape, startLive } from "./live.js";

const opts = options(process.argv.slice(2), ["clients", "messages", "rate", "out"]);
const clients = Number(opts.get("clients") ?? 100);
const messages = Number(opts.get("messages") ?? 1000);
const rate = Number(opts.get("rate") ?? 200);
if (![clients, messages, rate].every((n) => Number.isInteger(n) && n > 0) || clients > 2000 || messages > 100_000) {
  process.stderr.write(
    "npm run bench:compression -- [--clients 100 (≤ 2000)] [--messages 1000 (≤ 100000)] [--rate 200] [--out FILE]\n",
  );
  process.exit(2);
}

const WORDS = "the quick brown fox jumps over a lazy dog while seven users type in the lobby about lunch".split(" ");
/** Deterministic filler text: words in a pseudo-random order seeded by `seed`. */
function text(seed: number, words: number): string {
  let state = seed * 2_654_435_761;
  const out: string[] = [];
  for (let i = 0; i < words; i++) {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    out.push(WORDS[state % WORDS.length] ?? "a");
  }
  return out.join(" ");
}

const PAYLOADS: Record<string, (i: number) => unknown> = {
  chat: (i) => ({
    id: `m-${i}`,
    user: `user-${i % 17}`,
    name: "A. User",
    text: text(i, 12),
    sentAt: 1_764_000_000_000 + i,
  }),
  dashboard: (i) => ({
    at: 1_764_000_000_000 + i * 1000,
    series: Array.from({ length: 24 }, (_, s) => ({
      name: `svc-${s}.requests`,
      value: (i * 31 + s * 7) % 1000,
      unit: "req/s",
    })),
  }),
  document: (i) => ({
    doc: `doc-${i % 5}`,
    version: i,
    blocks: Array.from({ length: 40 }, (_, b) => ({
      id: `b${b}`,
      type: b % 5 === 0 ? "heading" : "paragraph",
      text: text(i + b, 20),
    })),
  }),
};

const SETTINGS = [
  { name: "off", compression: { enabled: false } },
  { name: "level 1", compression: { enabled: true, level: 1 } },
  { name: "level 6", compression: { enabled: true, level: 6 } },
  // What frames under the default minBytes (512) would gain if compressed too.
  { name: "level 1, minBytes 0", compression: { enabled: true, level: 1, minBytes: 0 } },
] as const;

interface Client {
  ws: WebSocket;
  /** The TCP socket under it: what crossed the wire is its bytesRead. */
  socket: Socket;
}

function open(url: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, "crier.v1.json");
    let socket: Socket | undefined;
    ws.once("upgrade", (response) => {
      socket = response.socket;
    });
    ws.once("open", () => (socket === undefined ? reject(new Error("no socket")) : resolve({ ws, socket })));
    ws.once("error", reject);
  });
}

/** Sends a frame and resolves with the reply that carries its id. */
function call(ws: WebSocket, id: number, frame: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const listener = (data: WebSocket.RawData) => {
      const reply = JSON.parse(String(data)) as Record<string, unknown>;
      if (reply.id !== id) return;
      ws.off("message", listener);
      resolve(reply);
    };
    ws.on("message", listener);
    ws.send(JSON.stringify({ ...frame, id }));
  });
}

interface Row {
  payload: string;
  setting: string;
  jsonBytes: number;
  wireBytes: number;
  cpuUs: number;
  compressed: number;
  negotiated: boolean;
}

async function measure(payload: string, setting: (typeof SETTINGS)[number]): Promise<Row> {
  // The publisher sends faster than a client's default command rate allows.
  const live = await startLive({
    delivery: { compression: setting.compression },
    limits: { commandsPerSecond: 1_000_000 },
  });
  const pid = live.instance.child.pid ?? 0;
  const make = PAYLOADS[payload] ?? (() => null);
  try {
    const subscribers: Client[] = [];
    let received = 0;
    let bad = 0;
    let allIn: () => void = () => {};
    const done = new Promise<void>((resolve) => {
      allIn = resolve;
    });
    for (let c = 0; c < clients; c++) {
      const client = await open(live.url);
      const ws = client.ws;
      await call(ws, 1, { op: "connect" });
      await call(ws, 2, { op: "subscribe", room: "bw" });
      let next = 0;
      ws.on("message", (data) => {
        const frame = JSON.parse(String(data)) as { op?: string; data?: unknown };
        if (frame.op !== "message") return;
        if (JSON.stringify(frame.data) !== JSON.stringify(make(next))) bad += 1;
        next += 1;
        received += 1;
        if (received === clients * messages) allIn();
      });
      subscribers.push(client);
    }
    const publisher = (await open(live.url)).ws;
    await call(publisher, 1, { op: "connect" });
    // Clients publish to rooms they are in (the default namespace's `publish: "subscribers"`).
    await call(publisher, 2, { op: "subscribe", room: "bw" });
    const read = () => subscribers.reduce((sum, client) => sum + client.socket.bytesRead, 0);
    const readBefore = read();
    const cpuBefore = sample(pid);
    let jsonBytes = 0;
    for (let i = 0; i < messages; i++) {
      const data = make(i);
      jsonBytes += Buffer.byteLength(JSON.stringify({ op: "message", room: "bw", data }));
      publisher.send(JSON.stringify({ op: "publish", room: "bw", data }));
      if ((i + 1) % Math.max(1, Math.round(rate / 20)) === 0) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // Bounded: a run that loses messages ends with what arrived, not a hang.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(
        () =>
          reject(new Error(`${received} of ${clients * messages} deliveries arrived (${payload}, ${setting.name})`)),
        30_000 + (1000 * messages) / rate,
      );
    });
    await Promise.race([done, deadline]).finally(() => clearTimeout(timer));
    const cpuAfter = sample(pid);
    const wireBytes = read() - readBefore;
    if (bad > 0) throw new Error(`${bad} messages arrived altered (${payload}, ${setting.name})`);
    const metrics = await scrape(live.httpUrl);
    const negotiated = subscribers.every((client) => client.ws.extensions === "permessage-deflate");
    for (const ws of [...subscribers.map((client) => client.ws), publisher]) ws.terminate();
    const cpu = cpuBefore && cpuAfter ? cpuBetween(cpuBefore, cpuAfter).seconds : Number.NaN;
    return {
      payload,
      setting: setting.name,
      jsonBytes: jsonBytes / messages,
      wireBytes: wireBytes / (clients * messages),
      cpuUs: (cpu * 1e6) / messages,
      compressed: metrics.get("crier_compressed_frames_total") ?? 0,
      negotiated,
    };
  } finally {
    await live.stop();
  }
}

const startLoad = (loadavg()[0] ?? 0).toFixed(2);
const rows: Row[] = [];
for (const payload of Object.keys(PAYLOADS)) {
  for (const setting of SETTINGS) {
    process.stderr.write(`compression: ${payload}, ${setting.name}\n`);
    rows.push(await measure(payload, setting));
  }
}

const off = new Map(rows.filter((row) => row.setting === "off").map((row) => [row.payload, row]));
const header = [
  "payload",
  "compression",
  "JSON B/msg",
  "wire B/delivery",
  "of off %",
  "crier CPU µs/publication",
  "frames compressed",
];
const table = rows.map((row) => {
  const base = off.get(row.payload);
  return [
    row.payload,
    row.setting + (row.setting !== "off" && !row.negotiated ? " (not negotiated!)" : ""),
    row.jsonBytes.toFixed(0),
    row.wireBytes.toFixed(1),
    base === undefined ? "-" : ((100 * row.wireBytes) / base.wireBytes).toFixed(1),
    row.cpuUs.toFixed(0),
    String(row.compressed),
  ];
});
const widths = header.map((name, i) => Math.max(name.length, ...table.map((cells) => (cells[i] ?? "").length)));
const line = (cells: string[]) => cells.map((cell, i) => cell.padStart(widths[i] ?? 0)).join("  ");
const summary = `compression: ${clients} subscribers in one room, ${messages} publications per run at ${rate}/s, JSON subprotocol`;
const lines = [
  summary,
  `$ ${commandLine("bench:compression", process.argv.slice(2))}`,
  "",
  line(header),
  ...table.map(line),
];
process.stdout.write(`${lines.join("\n")}\n`);
const out = opts.get("out");
if (out !== undefined) {
  const heading = reportHeading(summary, commandLine("bench:compression", process.argv.slice(2)));
  const load = `Load average ${startLoad} at the start.`;
  appendFileSync(out, `${[...heading, load, "", "```", ...lines.slice(3), "```", ""].join("\n")}\n`);
}
