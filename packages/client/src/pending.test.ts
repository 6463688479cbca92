import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ProtocolError, type ServerFrame } from "crier-protocol";
import { CrierClientError } from "./errors.js";
import { PendingReplies } from "./pending.js";

function waiter(): { promise: Promise<ServerFrame>; callbacks: { reply(f: ServerFrame): void; fail(e: Error): void } } {
  let callbacks = { reply: (_frame: ServerFrame) => {}, fail: (_error: Error) => {} };
  const promise = new Promise<ServerFrame>((resolve, reject) => {
    callbacks = { reply: resolve, fail: reject };
  });
  return { promise, callbacks };
}

describe("PendingReplies", () => {
  it("hands out increasing positive ids", () => {
    const pending = new PendingReplies(1000);
    assert.deepEqual([pending.nextId(), pending.nextId(), pending.nextId()], [1, 2, 3]);
  });

  it("settles each command with the reply of its own id", async () => {
    const pending = new PendingReplies(1000);
    const a = waiter();
    const b = waiter();
    pending.add(1, "publish", true, a.callbacks);
    pending.add(2, "publish", true, b.callbacks);
    assert.equal(pending.settle(2, { op: "ok", id: 2, offset: 20 }), true);
    assert.equal(pending.settle(1, { op: "ok", id: 1, offset: 10 }), true);
    assert.deepEqual(await a.promise, { op: "ok", id: 1, offset: 10 });
    assert.deepEqual(await b.promise, { op: "ok", id: 2, offset: 20 });
    assert.equal(pending.has(1) || pending.has(2), false);
  });

  it("ignores replies for ids it does not know, and a second reply for the same id", () => {
    const pending = new PendingReplies(1000);
    const a = waiter();
    pending.add(1, "send", true, a.callbacks);
    assert.equal(pending.settle(7, { op: "ok", id: 7 }), false);
    assert.equal(pending.settle(1, { op: "ok", id: 1 }), true);
    assert.equal(pending.settle(1, { op: "ok", id: 1 }), false);
  });

  it("rejects with a ProtocolError carrying the code of an error reply", async () => {
    const pending = new PendingReplies(1000);
    const a = waiter();
    pending.add(1, "publish", true, a.callbacks);
    pending.settle(1, { op: "error", id: 1, code: "forbidden", message: "no publishing here" });
    await assert.rejects(a.promise, (error) => {
      assert.ok(error instanceof ProtocolError);
      assert.equal(error.code, "forbidden");
      assert.equal(error.message, "no publishing here");
      return true;
    });
  });

  it("rejects with a timeout error when no reply comes in time", async () => {
    const pending = new PendingReplies(20);
    const a = waiter();
    pending.add(1, "presence", true, a.callbacks);
    // The reply timer is unref'd (in the client, the open socket keeps Node alive), so
    // this test holds the event loop open itself.
    const hold = setInterval(() => {}, 1000);
    try {
      await assert.rejects(a.promise, (error) => error instanceof CrierClientError && error.code === "timeout");
    } finally {
      clearInterval(hold);
    }
    assert.equal(pending.has(1), false);
  });

  it("a drop fails sent commands but keeps queued ones, which can be sent later", async () => {
    const pending = new PendingReplies(1000);
    const sent = waiter();
    const queued = waiter();
    pending.add(1, "publish", true, sent.callbacks);
    pending.add(2, "publish", false, queued.callbacks);
    pending.failAll(new CrierClientError("disconnected", "gone"), true);
    await assert.rejects(sent.promise, (error) => error instanceof CrierClientError && error.code === "disconnected");
    assert.equal(pending.has(2), true);
    assert.equal(pending.markSent(2), true);
    pending.settle(2, { op: "ok", id: 2 });
    assert.deepEqual(await queued.promise, { op: "ok", id: 2 });
    assert.equal(pending.markSent(2), false);
  });

  it("failAll fails everything and leaves nothing behind", async () => {
    const pending = new PendingReplies(1000);
    const a = waiter();
    const b = waiter();
    pending.add(1, "publish", true, a.callbacks);
    pending.add(2, "publish", false, b.callbacks);
    pending.failAll(new CrierClientError("closed", "bye"));
    await assert.rejects(a.promise, { code: "closed" });
    await assert.rejects(b.promise, { code: "closed" });
    assert.equal(pending.has(1) || pending.has(2), false);
  });
});
