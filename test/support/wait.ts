// Waiting on a condition that no event announces (a count on another process,
// a key in Redis): poll it, with a deadline that turns a hang into a failure
// naming what was awaited.

export async function waitUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Whether `promise` settles within the event loop's current turn (before a
 * setImmediate callback runs): a call that waits for a timeout, a reconnect or a
 * queue to drain cannot. The event-based form of "rejected at once", with no
 * wall-clock bound to flake on a loaded machine.
 */
export async function settlesAtOnce(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  const done = (): void => {
    settled = true;
  };
  promise.then(done, done);
  await new Promise((resolve) => setImmediate(resolve));
  return settled;
}
