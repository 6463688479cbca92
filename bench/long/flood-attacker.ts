// The attacker of bench:flood, in a process of its own so that its work does
// not delay the well-behaved client it is measured against:
// `flood-attacker.ts PORT ADDRESSES INFLIGHT DURATION_S HOLD_MS` prints one
// JSON line with the attempts and what each got.

import { connect, type Socket } from "node:net";

const [port = 0, addresses = 0, inflight = 0, durationS = 0, holdMs = 0] = process.argv.slice(2).map(Number);
if (![port, addresses, inflight, durationS, holdMs].every((n) => Number.isFinite(n))) {
  process.stderr.write("usage: flood-attacker.ts PORT ADDRESSES INFLIGHT DURATION_S HOLD_MS\n");
  process.exit(2);
}

// The flood: per address `inflight` raw upgrade attempts at a time, each
// accepted socket held `holdMs` without a connect frame, then dropped.
const outcomes = new Map<string, number>();
const bump = (key: string): void => {
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
};
const held = new Set<Socket>();
function attempt(localAddress: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port, localAddress });
    let head = "";
    let settled = false;
    const settle = (outcome: string): void => {
      if (settled) return;
      settled = true;
      bump(outcome);
      resolve();
    };
    socket.setNoDelay(true);
    socket.on("connect", () => {
      socket.write(
        `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      );
    });
    socket.on("data", (chunk) => {
      head += chunk.toString("latin1");
      const status = /^HTTP\/1\.1 (\d{3})/.exec(head)?.[1];
      if (status === undefined) return;
      settle(status);
      if (status === "101") {
        held.add(socket);
        setTimeout(() => {
          held.delete(socket);
          socket.destroy();
        }, holdMs).unref();
      } else socket.destroy();
    });
    socket.on("error", (error: NodeJS.ErrnoException) => settle(error.code ?? "error"));
    socket.on("close", () => settle("closed without an answer"));
  });
}
const floodStart = performance.now();
const floodUntil = floodStart + durationS * 1000;
let attempts = 0;
await Promise.all(
  Array.from({ length: addresses * inflight }, async (_, i) => {
    const address = `127.0.2.${1 + (i % addresses)}`;
    while (performance.now() < floodUntil) {
      attempts++;
      await attempt(address);
    }
  }),
);
const seconds = (performance.now() - floodStart) / 1000;
for (const socket of held) socket.destroy();
process.stdout.write(`${JSON.stringify({ attempts, seconds, outcomes: Object.fromEntries(outcomes) })}\n`);
