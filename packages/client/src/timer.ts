// One-shot timers the client can cancel. Timers that only watch a connection are
// unref'd: the open socket is what keeps a Node process alive, not a watchdog.
// The reconnect timer is the exception (keepAlive): between two attempts there is no
// socket, and a process that is meant to stay connected must not exit in that gap.

export interface Timer {
  cancel(): void;
}

export function startTimer(ms: number, run: () => void, keepAlive = false): Timer {
  const handle = setTimeout(run, ms);
  // In browsers the handle is a number; in Node an object with unref().
  const nodeHandle = handle as unknown as { unref?: unknown };
  if (!keepAlive && typeof nodeHandle === "object" && typeof nodeHandle.unref === "function") nodeHandle.unref();
  return { cancel: () => clearTimeout(handle) };
}
