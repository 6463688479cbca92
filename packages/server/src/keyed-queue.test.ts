// KeyedQueue: one step at a time per key, in call order, whatever the steps before did.

import assert from "node:assert/strict";
import { test } from "node:test";
import { KeyedQueue } from "./keyed-queue.js";

/** A promise and the means to settle it from the test. */
function deferred(): { promise: Promise<void>; resolve(): void; reject(error: Error): void } {
  let resolve = (): void => {};
  let reject = (_error: Error): void => {};
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

test("steps of one key run one at a time in call order, past a failure; other keys do not wait", async () => {
  const queue = new KeyedQueue();
  const log: string[] = [];
  const first = deferred();
  const a1 = queue.run("a", async () => {
    log.push("a1 start");
    await first.promise;
    log.push("a1 end");
  });
  const a2 = queue.run("a", async () => {
    log.push("a2");
    throw new Error("a2 failed");
  });
  const a3 = queue.run("a", async () => {
    log.push("a3");
    return 3;
  });
  await queue.run("b", async () => {
    log.push("b");
  });
  assert.deepEqual(log, ["a1 start", "b"], "b ran while a1 was still running; a2 waited");
  first.resolve();
  await a1;
  await assert.rejects(a2, /a2 failed/);
  assert.equal(await a3, 3);
  assert.deepEqual(log, ["a1 start", "b", "a1 end", "a2", "a3"]);
});
