// Every child process a test starts dies with the test process, so a failed or
// interrupted test never leaves a redis-server, crier or nginx behind.

import { type ChildProcess, spawn } from "node:child_process";

const running = new Set<ChildProcess>();
let hooked = false;

function hookProcessExit(): void {
  if (hooked) return;
  hooked = true;
  const killAll = (): void => {
    for (const child of running) child.kill("SIGKILL");
    running.clear();
  };
  process.on("exit", killAll);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      killAll();
      // Die of the same signal, as the process would have without this hook.
      process.kill(process.pid, signal);
    });
  }
}

/** Kills `child` with SIGKILL if it is still running when the test process exits. */
export function track(child: ChildProcess): void {
  hookProcessExit();
  running.add(child);
  child.once("exit", () => running.delete(child));
}

/**
 * Resolves when `proc` prints `line` (on stdout or stderr); rejects with the
 * tail of its output if it exits first or takes longer than `timeoutMs`.
 * `what` names the process in those errors, e.g. "redis-server on port 6379".
 */
export function waitForLine(proc: ChildProcess, line: string, what: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = "";
    let settled = false;
    const finish = (error?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) {
        proc.kill("SIGKILL");
        reject(error);
      } else {
        resolve();
      }
    };
    const onData = (chunk: Buffer): void => {
      // Keep only the tail: enough to explain a failure, bounded however chatty the server is.
      output = (output + chunk.toString("utf8")).slice(-4000);
      if (output.includes(line)) finish();
    };
    // The pipes must keep being read after ready, or a full pipe would block the server.
    proc.stdout?.on("data", onData);
    proc.stderr?.on("data", onData);
    proc.once("error", (err) => finish(new Error(`cannot run ${what}: ${err.message}`)));
    proc.once("exit", (code, signal) =>
      finish(new Error(`${what} exited (${signal ?? code}) before ready:\n${output}`)),
    );
    const timer = setTimeout(
      () => finish(new Error(`${what} not ready within ${timeoutMs} ms:\n${output}`)),
      timeoutMs,
    );
  });
}

/** A server binary run as a tracked child: launched until it prints its ready line, killed and launched again. */
export interface ServerChild {
  /** Starts the process and resolves once it prints `readyLine`. */
  launch(): Promise<void>;
  /** Sends `signal` (default SIGKILL, a crash) and resolves once the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export function serverChild(
  binary: string,
  args: readonly string[],
  readyLine: string,
  what: string,
  timeoutMs: number,
): ServerChild {
  let child: ChildProcess | undefined;
  return {
    async launch() {
      const proc = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
      track(proc);
      child = proc;
      await waitForLine(proc, readyLine, what, timeoutMs);
    },
    async kill(signal: NodeJS.Signals = "SIGKILL") {
      const proc = child;
      child = undefined;
      if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
      proc.kill(signal);
      await exited;
    },
  };
}
