import assert from "node:assert/strict";
import { test } from "node:test";
import { RateLimiter } from "./rate-limiter.js";

test("a burst of `rate` passes, then commands are limited, then a flood is abusive; time refills", () => {
  let now = 0;
  const limiter = new RateLimiter(5, () => now);
  for (let i = 0; i < 5; i++) assert.equal(limiter.take(), "ok");
  for (let i = 0; i < 4; i++) assert.equal(limiter.take(), "limited");
  assert.equal(limiter.take(), "abusive");
  now += 3000;
  assert.equal(limiter.take(), "ok", "three seconds refill the bucket (capped at one burst)");
});
