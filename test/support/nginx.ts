// Starts a real nginx in front of crier instances, with the configuration
// documented in docs/deployment.md: the test exercises the docs as written,
// only with this run's ports.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { track } from "./children.js";
import { REPO_ROOT } from "./crier.js";
import { freePort } from "./redis.js";
import { waitUntil } from "./wait.js";

export interface NginxProcess {
  port: number;
  httpUrl: string;
  wsUrl: string;
  stop(): Promise<void>;
}

/** The ```nginx block of docs/deployment.md. */
export async function documentedConfig(): Promise<string> {
  const docs = await readFile(join(REPO_ROOT, "docs/deployment.md"), "utf8");
  const match = /```nginx\n([\s\S]*?)```/.exec(docs);
  if (match?.[1] === undefined) throw new Error("docs/deployment.md has no ```nginx block");
  return match[1];
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

export async function startNginx(upstreamPorts: number[]): Promise<NginxProcess> {
  const dir = await mkdtemp(join(tmpdir(), "crier-nginx-"));
  const port = await freePort();
  let server = await documentedConfig();
  // This run's addresses: the documented upstream servers become ours, and it listens on a free port.
  server = server.replace(/^\s*server 127\.0\.0\.1:\d+;\n/gm, "");
  server = server.replace(
    /upstream crier \{\n/,
    `upstream crier {\n${upstreamPorts.map((p) => `    server 127.0.0.1:${p};\n`).join("")}`,
  );
  server = server.replace(/listen 80;/, `listen 127.0.0.1:${port};`);
  const conf = [
    process.getuid?.() === 0 ? "user root;" : "",
    "worker_processes 1;",
    "daemon off;",
    `pid ${join(dir, "nginx.pid")};`,
    "error_log stderr warn;",
    "events { worker_connections 1024; }",
    "http {",
    "  access_log off;",
    `  client_body_temp_path ${join(dir, "body")};`,
    `  proxy_temp_path ${join(dir, "proxy")};`,
    `  fastcgi_temp_path ${join(dir, "fastcgi")};`,
    `  uwsgi_temp_path ${join(dir, "uwsgi")};`,
    `  scgi_temp_path ${join(dir, "scgi")};`,
    server,
    "}",
  ].join("\n");
  await writeFile(join(dir, "nginx.conf"), conf);
  let output = "";
  const child: ChildProcess = spawn(
    existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx",
    ["-p", dir, "-c", join(dir, "nginx.conf")],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.once("error", (error) => {
    output += `cannot run nginx (install it: apt-get install nginx): ${error.message}`;
  });
  track(child);
  try {
    await waitUntil("nginx to listen", async () => {
      if (child.exitCode !== null || child.signalCode !== null || output.includes("cannot run nginx")) {
        throw new Error(`nginx did not start:\n${output}`);
      }
      return portOpen(port);
    });
  } catch (error) {
    child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    port,
    httpUrl: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGQUIT");
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
