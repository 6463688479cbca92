import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type BackoffOptions, backoffCeiling, backoffDelay } from "./backoff.js";

const full: BackoffOptions = { minDelayMs: 200, maxDelayMs: 10_000, jitter: "full" };
const equal: BackoffOptions = { ...full, jitter: "equal" };
const top = () => 1;
const bottom = () => 0;
const middle = () => 0.5;

describe("backoffDelay", () => {
  it("doubles the ceiling from the minimum with each attempt and stops at the maximum", () => {
    const ceilings = [0, 1, 2, 3, 4, 5, 6, 7].map((attempt) => backoffDelay(attempt, full, top));
    assert.deepEqual(ceilings, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
    assert.deepEqual(
      [0, 1, 2].map((attempt) => backoffCeiling(attempt, full)),
      [200, 400, 800],
    );
  });

  it("full jitter spreads delays over [0, ceiling]", () => {
    assert.equal(backoffDelay(3, full, bottom), 0);
    assert.equal(backoffDelay(3, full, middle), 800);
    assert.equal(backoffDelay(3, full, top), 1600);
  });

  it("equal jitter keeps at least half the ceiling", () => {
    assert.equal(backoffDelay(3, equal, bottom), 800);
    assert.equal(backoffDelay(3, equal, middle), 1200);
    assert.equal(backoffDelay(3, equal, top), 1600);
  });

  it("different random draws give different delays for the same attempt", () => {
    let seed = 1;
    const lcg = () => {
      seed = (seed * 48_271) % 2_147_483_647;
      return seed / 2_147_483_647;
    };
    const delays = new Set(Array.from({ length: 20 }, () => backoffDelay(4, full, lcg)));
    assert.ok(delays.size > 10, `expected spread, got ${[...delays].join(",")}`);
    for (const delay of delays) assert.ok(delay >= 0 && delay <= 3200);
  });

  it("stays finite and capped for huge attempt numbers and clamps a bad random", () => {
    assert.equal(backoffDelay(10_000, full, top), 10_000);
    assert.equal(backoffDelay(Number.MAX_SAFE_INTEGER, equal, bottom), 5000);
    assert.equal(
      backoffDelay(0, full, () => 7),
      200,
    );
    assert.equal(
      backoffDelay(0, full, () => -3),
      0,
    );
  });
});
