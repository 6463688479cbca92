import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { StatsSampler, type Totals } from "./sampler.js";
import { WarningLog } from "./warnings.js";

function totals(over: Partial<Totals> = {}): Totals {
  return {
    connections: 0,
    messagesOut: 0,
    deliveries: 0,
    ready: true,
    reconnects: 0,
    slowConsumers: 0,
    rateLimited: 0,
    ...over,
  };
}

describe("StatsSampler", () => {
  test("turns running totals into per-interval values, with publish latency, and keeps only the newest", () => {
    let now = totals();
    let ticks = 0;
    const sampler = new StatsSampler(() => now, { intervalMs: 1000, capacity: 3, onTick: () => ticks++ });
    sampler.start();
    sampler.stop();
    for (let i = 1; i <= 5; i++) {
      now = totals({ connections: i, messagesOut: i * 10, deliveries: i * 100, reconnects: i, rateLimited: i * 2 });
      if (i === 5) {
        sampler.published(4);
        sampler.published(8);
      }
      sampler.sample();
    }
    const samples = sampler.samples();
    assert.equal(ticks, 5);
    assert.deepEqual(
      samples.map((s) => s.connections),
      [3, 4, 5],
      "the ring keeps the newest three, oldest first",
    );
    const last = samples.at(-1);
    assert.ok(last !== undefined);
    assert.equal(last.reconnects, 1, "counts are per interval");
    assert.equal(last.rateLimited, 2);
    assert.ok(last.messagesOut > 0 && last.deliveries > last.messagesOut, "rates of the counters' growth");
    assert.equal(last.latencyMs, 6);
    assert.equal(last.latencyMaxMs, 8);
    assert.equal(samples[0]?.latencyMs, null, "no publish: no latency");
    assert.deepEqual(sampler.samples(last.t), [], "nothing newer than the newest");
  });
});

describe("WarningLog", () => {
  test("counts every warning and keeps the last few, newest first", () => {
    const log = new WarningLog(2);
    log.add("rate_limited", "one");
    log.add("auth_failed", "two");
    log.add("rate_limited", "three");
    assert.equal(log.count("rate_limited"), 2);
    assert.equal(log.totals().auth_failed, 1);
    assert.equal(log.totals().slow_consumer, 0);
    assert.deepEqual(
      log.recent().map((w) => w.detail),
      ["three", "two"],
    );
  });
});
