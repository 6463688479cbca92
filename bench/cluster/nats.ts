// A private NATS for one run (--engine nats): one nats-server with JetStream
// on a free port of 127.0.0.1, its store in the run's log directory, killed
// with the run. Never the machine's own NATS.

import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { freePort, type Started, start, stop, waitUntil } from "./processes.js";

export interface NatsServer extends Started {
  url: string;
}

export async function startNatsServer(logDir: string): Promise<NatsServer> {
  const port = await freePort();
  const dir = join(logDir, `nats-${port}`);
  mkdirSync(dir, { recursive: true });
  const started = start(
    "nats-server",
    ["-js", "-sd", dir, "-a", "127.0.0.1", "-p", String(port)],
    join(logDir, `nats-${port}.log`),
    logDir,
  );
  await waitUntil(() => answersInfo(port), started, "nats-server");
  return { ...started, url: `nats://127.0.0.1:${port}` };
}

export function stopNatsServer(nats: NatsServer): Promise<void> {
  return stop(nats.child, 3000);
}

/** `nats-server --version`, e.g. "2.9.10"; "unknown" when it cannot be run. */
export function natsVersion(): string {
  try {
    return execFileSync("nats-server", ["--version"], { encoding: "utf8" })
      .trim()
      .replace(/^nats-server: v/, "");
  } catch {
    return "unknown";
  }
}

/** A NATS server greets every connection with an INFO line. */
function answersInfo(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("data", (data) => done(data.toString().startsWith("INFO ")));
  });
}
