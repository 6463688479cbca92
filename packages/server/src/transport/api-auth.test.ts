// ApiAuth with a clock the test moves: how long a refusal lasts (Retry-After)
// and that the next minute starts clean for every address.

import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { describe, test } from "node:test";
import { pino } from "pino";
import { Refusals } from "../limits/refusals.js";
import { ApiAuth } from "./api-auth.js";

const KEY = "the-right-key";
const withKey = (key: string) => ({ headers: { authorization: `Bearer ${key}` } }) as IncomingMessage;

describe("ApiAuth", () => {
  test("Retry-After is what is left of the window; the next window forgets every failure", () => {
    let now = 1_000_000;
    const auth = new ApiAuth({
      apiKeys: [KEY],
      failuresPerMinute: 1,
      failuresPerMinuteTotal: 2,
      refusals: new Refusals(pino({ level: "silent" })),
      now: () => now,
    });
    assert.equal(auth.check(withKey("no"), "a")?.code, "unauthorized");
    now += 20_000;
    const overAddress = auth.check(withKey("no"), "a");
    assert.deepEqual(overAddress?.code === "rate_limited" && overAddress.retryAfterSeconds, 40);
    assert.match(overAddress?.message ?? "", /limits\.apiAuthFailuresPerMinute = 1/);
    // Two failures so far on the instance: the third, from a new address, is over the total.
    now += 30_500;
    const overInstance = auth.check(withKey("no"), "b");
    assert.deepEqual(overInstance?.code === "rate_limited" && overInstance.retryAfterSeconds, 10);
    assert.match(overInstance?.message ?? "", /limits\.apiAuthFailuresPerMinuteTotal = 2/);
    assert.equal(auth.check(withKey(KEY), "b")?.code, "rate_limited", "b failed while the instance is over");
    assert.equal(auth.check(withKey(KEY), "c"), undefined, "c never failed");

    now += 10_000;
    for (const address of ["a", "b"]) assert.equal(auth.check(withKey(KEY), address), undefined, address);
    assert.equal(
      auth.check({ headers: {} } as IncomingMessage, "d")?.message,
      "missing API key: send 'Authorization: Bearer API_KEY'",
    );
  });
});
