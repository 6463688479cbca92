import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Emitter } from "./emitter.js";

interface Events {
  tick: number;
  word: string;
}

class Probe extends Emitter<Events> {
  fire<K extends keyof Events>(event: K, payload: Events[K]): void {
    this.emit(event, payload);
  }
}

describe("Emitter", () => {
  it("calls listeners of the event with its payload, and only those", () => {
    const probe = new Probe();
    const ticks: number[] = [];
    const words: string[] = [];
    probe.on("tick", (n) => ticks.push(n));
    probe.on("word", (w) => words.push(w));
    probe.fire("tick", 1);
    probe.fire("word", "a");
    probe.fire("tick", 2);
    assert.deepEqual(ticks, [1, 2]);
    assert.deepEqual(words, ["a"]);
  });

  it("on() returns a remover, once() fires a single time", () => {
    const probe = new Probe();
    const seen: string[] = [];
    const remove = probe.on("tick", (n) => seen.push(`on${n}`));
    probe.once("tick", (n) => seen.push(`once${n}`));
    probe.fire("tick", 1);
    remove();
    probe.fire("tick", 2);
    assert.deepEqual(seen, ["on1", "once1"]);
    assert.equal(probe.listenerCount("tick"), 0);
  });

  it("a throwing listener is reported and does not stop the others", () => {
    const reported: unknown[] = [];
    const isolated = new (class extends Emitter<Events> {
      fire(n: number): void {
        this.emit("tick", n);
      }
    })((error) => reported.push(error));
    const seen: number[] = [];
    isolated.on("tick", () => {
      throw new Error("listener bug");
    });
    isolated.on("tick", (n) => seen.push(n));
    isolated.fire(3);
    assert.deepEqual(seen, [3]);
    assert.equal(reported.length, 1);
    assert.match(String(reported[0]), /listener bug/);
  });
});
