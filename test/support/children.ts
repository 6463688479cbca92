// Every child process a test starts dies with the test process, so a failed or
// interrupted test never leaves a redis-server, crier or nginx behind.

import type { ChildProcess } from "node:child_process";

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
