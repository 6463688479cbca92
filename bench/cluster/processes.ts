// Every child process the bench starts is registered here, so that the run
// kills all of them whatever way it ends: normally, on an error, or on Ctrl-C.

import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";

const children = new Set<ChildProcess>();

export interface Started {
  child: ChildProcess;
  pid: number;
  /** File that receives the process's stdout and stderr. */
  logFile: string;
}

/** Starts `command` with its output going to `logFile`; the process is killed when the bench exits. */
export function start(command: string, args: string[], logFile: string, cwd: string): Started {
  const fd = openSync(logFile, "a");
  try {
    const child = spawn(command, args, { cwd, stdio: ["ignore", fd, fd] });
    if (child.pid === undefined) throw new Error(`cannot start ${command}`);
    children.add(child);
    child.once("exit", () => children.delete(child));
    return { child, pid: child.pid, logFile };
  } finally {
    closeSync(fd);
  }
}

/** Whether the process has exited. */
export function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export function stop(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (exited(child)) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/** Kills every process still running, at once (exit path: no waiting). */
export function killAll(): void {
  for (const child of children) child.kill("SIGKILL");
  children.clear();
}

/** The last `lines` lines of a log file, for error messages. */
export function tail(logFile: string, lines = 15): string {
  try {
    return readFileSync(logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Polls `check` every 100 ms until it resolves true, the child exits, or `timeoutMs` passes. */
export async function waitUntil(
  check: () => Promise<boolean>,
  started: Started,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (exited(started.child)) {
      throw new Error(
        `${what} exited during start-up; its log (${started.logFile}) ends with:\n${tail(started.logFile)}`,
      );
    }
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(
    `${what} not ready within ${timeoutMs} ms; its log (${started.logFile}) ends with:\n${tail(started.logFile)}`,
  );
}
