// Property tests of the offset gate: for random publication sequences, random
// moments at which the subscription goes live and history is read, and random
// lag of the live channel behind the history read, a subscriber gets every
// message after its position exactly once, in order.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { random } from "../../../../test/support/random.js";
import { OffsetGate, type Offsetted } from "./offset-gate.js";

describe("offset gate", () => {
  test("history then held live messages, overlap dropped", () => {
    const gate = new OffsetGate<string>(1, true);
    assert.equal(gate.admit(4, "m4"), "held");
    assert.equal(gate.admit(5, "m5"), "held");
    const history: Offsetted<string>[] = [2, 3, 4].map((offset) => ({ offset, item: `m${offset}` }));
    assert.deepEqual(gate.release(1, history), { items: ["m2", "m3", "m4", "m5"], last: 5, contiguous: true });
    assert.equal(gate.catchingUp, false);
  });

  test("after release, a late live copy of a message read from history is a duplicate", () => {
    const gate = new OffsetGate<number>(0, true);
    gate.release(
      0,
      [1, 2, 3].map((offset) => ({ offset, item: offset })),
    );
    assert.equal(gate.admit(2, 2), "duplicate");
    assert.equal(gate.admit(3, 3), "duplicate");
    assert.equal(gate.admit(4, 4), "deliver");
    assert.equal(gate.position, 4);
  });

  test("a hole is reported, in a release and live", () => {
    const gate = new OffsetGate<number>(5, true);
    gate.admit(9, 9);
    assert.deepEqual(gate.release(5, [{ offset: 6, item: 6 }]), { items: [6, 9], last: 9, contiguous: false });
    assert.equal(gate.admit(12, 12), "gap");
    assert.equal(gate.position, 12);
  });

  test("random interleavings: every message after the position exactly once, in order", () => {
    let checked = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const rand = random(seed);
      const total = 1 + Math.floor(rand() * 40);
      const since = Math.floor(rand() * total);
      // The subscription goes live after `liveAt` publications; history is
      // read after `readAt` of them; each live delivery lags its publication
      // by `lag` steps, so it may arrive after the history read.
      const liveAt = Math.floor(rand() * (total + 1));
      const readAt = liveAt + Math.floor(rand() * (total - liveAt + 1));
      const retained = 1 + Math.floor(rand() * total);
      const lag = Math.floor(rand() * 5);
      const gate = new OffsetGate<number>(since, true);
      const out: number[] = [];
      let complete = true;
      const inFlight: { offset: number; at: number }[] = [];
      for (let step = 0; step <= total + lag + 1; step++) {
        if (step >= 1 && step <= total && step > liveAt) inFlight.push({ offset: step, at: step + lag });
        while (inFlight.length > 0 && (inFlight[0]?.at ?? Number.POSITIVE_INFINITY) <= step) {
          const { offset } = inFlight.shift() ?? { offset: 0 };
          const verdict = gate.admit(offset, offset);
          if (verdict === "deliver" || verdict === "gap") out.push(offset);
          if (verdict === "gap") assert.fail(`seed ${seed}: live gap at ${offset}`);
        }
        if (step === readAt && gate.catchingUp) {
          const published = Math.min(step, total);
          const oldest = Math.max(1, published - retained + 1);
          complete = oldest <= since + 1 || published <= since;
          if (!complete) break;
          const history: Offsetted<number>[] = [];
          for (let offset = since + 1; offset <= published; offset++) history.push({ offset, item: offset });
          const released = gate.release(since, history);
          assert.equal(released.contiguous, true, `seed ${seed}`);
          out.push(...released.items);
        }
      }
      if (!complete) continue;
      checked++;
      const expected = Array.from({ length: total - since }, (_, i) => since + 1 + i);
      assert.deepEqual(out, expected, `seed ${seed}`);
    }
    assert.ok(checked > 1000, `only ${checked} interleavings were recoverable`);
  });
});
