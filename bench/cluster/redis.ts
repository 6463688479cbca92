// A private redis-server for one run: a free port on 127.0.0.1, nothing saved
// to disk, killed with the run. Never the machine's own Redis.

import { execFileSync } from "node:child_process";
import { connect } from "node:net";
import { join } from "node:path";
import { freePort, type Started, start, stop, waitUntil } from "./processes.js";

export interface RedisServer extends Started {
  port: number;
  url: string;
}

export async function startRedis(logDir: string): Promise<RedisServer> {
  const port = await freePort();
  const started = start(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"],
    join(logDir, `redis-${port}.log`),
    logDir,
  );
  await waitUntil(() => ping(port), started, "redis-server");
  return { ...started, port, url: `redis://127.0.0.1:${port}` };
}

export function stopRedis(redis: RedisServer): Promise<void> {
  return stop(redis.child, 3000);
}

/** `redis-server --version`, e.g. "7.0.15"; "unknown" when it cannot be run. */
export function redisVersion(): string {
  try {
    const out = execFileSync("redis-server", ["--version"], { encoding: "utf8" });
    return /v=(\S+)/.exec(out)?.[1] ?? out.trim();
  } catch {
    return "unknown";
  }
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (data) => done(data.toString().startsWith("+PONG")));
  });
}
