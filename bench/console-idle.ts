// What the console costs an instance nobody is watching: the same idle crier
// instance (memory backplane, 1000 idle connections) with the console's
// per-second sampler running and with it stopped, side by side as two child
// processes over the same minute, CPU time from process.cpuUsage().
//   node --conditions=crier-source --import tsx bench/console-idle.ts [seconds=60] [rounds=2]

import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { WebSocket } from "ws";
import { CrierNode } from "../packages/server/src/node.js";

const CONNECTIONS = 1000;

async function child(variant: string, seconds: number): Promise<void> {
  const node = await CrierNode.create({
    config: { port: 0, host: "127.0.0.1", apiKey: "bench-key" },
    logger: pino({ level: "silent" }),
  });
  const { port } = await node.listen();
  // The sampler is the console's only periodic work; "off" stops it (a private member, for this measurement only).
  if (variant === "off") node["console"].close();
  const sockets: WebSocket[] = [];
  for (let i = 0; i < CONNECTIONS; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    await new Promise((resolve) => ws.once("open", resolve));
    ws.send('{"op":"connect","id":1}');
    ws.on("message", (data) => {
      if (String(data) === '{"op":"ping"}') ws.send('{"op":"pong"}');
    });
    sockets.push(ws);
  }
  await new Promise((resolve) => setTimeout(resolve, 5000));
  const start = process.cpuUsage();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const used = process.cpuUsage(start);
  process.stdout.write(`${JSON.stringify({ variant, cpuMs: (used.user + used.system) / 1000, seconds })}\n`);
  for (const ws of sockets) ws.terminate();
  await node.close();
}

function runChild(variant: string, seconds: number): Promise<{ variant: string; cpuMs: number }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      process.execPath,
      [
        "--conditions=crier-source",
        "--import",
        "tsx",
        fileURLToPath(import.meta.url),
        "--child",
        variant,
        String(seconds),
      ],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    let out = "";
    proc.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    proc.on("error", reject);
    proc.on("exit", () =>
      resolve(JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as { variant: string; cpuMs: number }),
    );
  });
}

const args = process.argv.slice(2);
if (args[0] === "--child") {
  await child(args[1] ?? "on", Number(args[2] ?? 60));
} else {
  const seconds = Number(args[0] ?? 60);
  const rounds = Number(args[1] ?? 2);
  console.log(`| round | sampler on: CPU ms in ${seconds} s | sampler off: CPU ms in ${seconds} s |`);
  console.log("|---|---|---|");
  for (let round = 1; round <= rounds; round++) {
    const [on, off] = await Promise.all([runChild("on", seconds), runChild("off", seconds)]);
    console.log(`| ${round} | ${on.cpuMs.toFixed(0)} | ${off.cpuMs.toFixed(0)} |`);
  }
}
