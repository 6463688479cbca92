import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { MessagePush } from "crier-protocol";
import { CrierClientError } from "./errors.js";
import { positionAfter, Subscription } from "./subscription.js";

const detach = async () => {};

describe("positionAfter", () => {
  it("keeps the `since` sent when the server recovered from it: the replayed messages advance it", () => {
    const since = { offset: 6, epoch: "e1" };
    assert.deepEqual(
      positionAfter({ op: "subscribed", room: "r", offset: 9, epoch: "e1", recovered: true }, since),
      since,
    );
  });

  it("takes the reply's position when not recovered, or when the epoch changed", () => {
    const since = { offset: 6, epoch: "e1" };
    const reset = { op: "subscribed", room: "r", offset: 2, epoch: "e2", recovered: false } as const;
    assert.deepEqual(positionAfter(reset, since), { offset: 2, epoch: "e2" });
    assert.deepEqual(positionAfter({ ...reset, recovered: true }, since), { offset: 2, epoch: "e2" });
    assert.deepEqual(positionAfter(reset, undefined), { offset: 2, epoch: "e2" });
  });

  it("has no position for rooms without history", () => {
    assert.equal(positionAfter({ op: "subscribed", room: "r", recovered: false }, undefined), undefined);
  });
});

describe("Subscription", () => {
  it("resolves ready on the first `subscribed`, then reports later ones as resubscribed", async () => {
    const sub = new Subscription("r", () => {}, {}, detach);
    const resubscribed: boolean[] = [];
    sub.on("resubscribed", (info) => resubscribed.push(info.recovered));
    sub.handleSubscribed({ op: "subscribed", room: "r", offset: 1, epoch: "e", recovered: false }, undefined);
    assert.deepEqual(await sub.ready, { room: "r", offset: 1, epoch: "e", recovered: false });
    assert.equal(sub.state, "active");
    sub.handleConnectionLost();
    assert.equal(sub.state, "subscribing");
    sub.handleSubscribed(
      { op: "subscribed", room: "r", offset: 1, epoch: "e", recovered: true },
      { offset: 1, epoch: "e" },
    );
    assert.deepEqual(resubscribed, [true]);
  });

  it("delivers messages to its handler and advances its position with their offsets", () => {
    const got: MessagePush[] = [];
    const sub = new Subscription("r", (m) => got.push(m), { since: { offset: 3, epoch: "e" } }, detach);
    assert.deepEqual(sub.position, { offset: 3, epoch: "e" });
    sub.handleMessage({ op: "message", room: "r", data: "x", offset: 4 });
    sub.handleMessage({ op: "message", room: "r", data: "y", offset: 5 });
    assert.deepEqual(
      got.map((m) => m.data),
      ["x", "y"],
    );
    assert.deepEqual(sub.position, { offset: 5, epoch: "e" });
  });

  it("rejects ready when refused before confirmation, and when ended before confirmation", async () => {
    const refused = new Subscription("r", () => {}, {}, detach);
    refused.handleError(new CrierClientError("timeout", "slow"), true);
    await assert.rejects(refused.ready, { code: "timeout" });
    assert.equal(refused.state, "failed");

    const ended = new Subscription("r", () => {}, {}, detach);
    ended.end();
    await assert.rejects(ended.ready, { code: "unsubscribed" });
    assert.equal(ended.state, "unsubscribed");
  });
});
