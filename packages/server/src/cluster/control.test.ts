import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ProtocolError } from "crier-protocol";
import { pino } from "pino";
import { ChannelNames } from "../broker/broker.js";
import { MemoryBroker } from "../broker/memory.js";
import { Control } from "./control.js";

type Methods = {
  echo: { request: { text: string }; reply: { text: string; by: string; from: string } };
  fail: { request: { code: "forbidden" | "boom" }; reply: never };
  slow: { request: Record<string, never>; reply: string };
};

const names = new ChannelNames("t:");

/** Instances a, b and c on one memory backplane; c never answers (it has not started). */
async function cluster(): Promise<{ a: Control<Methods>; b: Control<Methods>; broker: MemoryBroker }> {
  const broker = new MemoryBroker();
  const controls = new Map<string, Control<Methods>>();
  await broker.start((channel, envelope) => controls.get(channel)?.receive(envelope));
  const make = async (id: string): Promise<Control<Methods>> => {
    const control = new Control<Methods>({
      nodeId: id,
      broker,
      names,
      timeoutMs: 200,
      logger: pino({ enabled: false }),
    });
    control.handle("echo", ({ text }, from) => ({ text, by: id, from }));
    control.handle("fail", ({ code }) => {
      if (code === "forbidden") throw new ProtocolError("forbidden", "not for you");
      throw new Error("a bug with secrets in its message");
    });
    control.handle("slow", () => new Promise<string>(() => {}));
    controls.set(names.node(id), control);
    await control.start();
    return control;
  };
  return { a: await make("a"), b: await make("b"), broker };
}

describe("Control: request and reply between instances over the backplane", () => {
  // Control's timers are unref'd (library code): something must keep the test process up while it waits.
  let alive: NodeJS.Timeout | undefined;
  before(() => {
    alive = setInterval(() => {}, 1000);
  });
  after(() => clearInterval(alive));

  test("asks another instance and gets its typed reply, matched by correlation id", async () => {
    const { a } = await cluster();
    const replies = await Promise.all([a.ask("b", "echo", { text: "one" }), a.ask("b", "echo", { text: "two" })]);
    assert.deepEqual(replies, [
      { text: "one", by: "b", from: "a" },
      { text: "two", by: "b", from: "a" },
    ]);
  });

  test("answers itself without the backplane", async () => {
    const { a, broker } = await cluster();
    const before = broker.stats().published;
    assert.deepEqual(await a.ask("a", "echo", { text: "me" }), { text: "me", by: "a", from: "a" });
    assert.equal(broker.stats().published, before, "nothing was published");
  });

  test("askAll: one answer per instance, and the silent one named with why", async () => {
    const { a } = await cluster();
    const answers = await a.askAll(["a", "b", "c"], "echo", { text: "all" });
    assert.deepEqual(answers.slice(0, 2), [
      { node: "a", reply: { text: "all", by: "a", from: "a" } },
      { node: "b", reply: { text: "all", by: "b", from: "a" } },
    ]);
    const silent = answers[2];
    assert.ok(silent !== undefined && "error" in silent);
    assert.equal(silent.error.code, "unavailable");
    assert.match(silent.error.message, /instance c did not answer 'echo' within 200 ms/);
  });

  test("a handler's ProtocolError crosses with its code; any other error is 'internal' without its message", async () => {
    const { a } = await cluster();
    await assert.rejects(a.ask("b", "fail", { code: "forbidden" }), { code: "forbidden", message: "not for you" });
    await assert.rejects(a.ask("b", "fail", { code: "boom" }), { code: "internal", message: "internal error" });
  });

  test("an unknown method and a handler that never answers both end in an error, not a hang", async () => {
    const { a } = await cluster();
    await assert.rejects(
      a.ask("b", "nope" as "echo", { text: "" }),
      (error: unknown) => error instanceof ProtocolError && /no control method 'nope'/.test(error.message),
    );
    await assert.rejects(a.ask("b", "slow", {}), { code: "unavailable" });
  });

  test("close() rejects what is waiting and refuses new requests", async () => {
    const { a } = await cluster();
    const waiting = a.ask("b", "slow", {}, 10_000);
    a.close();
    await assert.rejects(waiting, { code: "unavailable", message: "this instance is shutting down" });
    await assert.rejects(a.ask("b", "echo", { text: "" }), { code: "unavailable" });
  });

  test("a publish the backplane refuses fails the request at once", async () => {
    const { a, broker } = await cluster();
    await broker.close();
    await assert.rejects(a.ask("b", "echo", { text: "" }, 10_000), { code: "unavailable" });
  });
});
