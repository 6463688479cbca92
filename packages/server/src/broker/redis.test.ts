// RedisBroker behaviour beyond the shared contract: failing start, malformed
// messages, and surviving a Redis crash (SIGKILL) and restart on the same port.

import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, afterEach, before, describe, test } from "node:test";
import { ProtocolError } from "crier-protocol";
import { Redis } from "ioredis";
import { type Logger, pino } from "pino";
import { freePort, type RedisProcess, startRedis } from "../../../../test/support/redis.js";
import { settlesAtOnce, waitUntil } from "../../../../test/support/wait.js";
import { backoffDelay, redactUrl } from "../redis/connection.js";
import type { Envelope } from "./envelope.js";
import { RedisBroker, type RedisBrokerOptions } from "./redis.js";

const envelope = (data: string): Envelope => ({ kind: "message", room: "r", node: "test-node", data });

function assertUnavailable(err: unknown): true {
  assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`);
  assert.equal(err.code, "unavailable");
  return true;
}

/** A pino logger whose lines the test can read. */
function capturedLogger(): { logger: Logger; lines: Array<{ level: number; msg: string }> } {
  const lines: Array<{ level: number; msg: string }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const parsed: unknown = JSON.parse(chunk.toString("utf8"));
      if (typeof parsed === "object" && parsed !== null && "level" in parsed && "msg" in parsed) {
        lines.push({ level: Number(parsed.level), msg: String(parsed.msg) });
      }
      done();
    },
  });
  return { logger: pino({ level: "debug" }, sink), lines };
}

test("backoffDelay grows exponentially up to the cap, jittered within its upper half", () => {
  assert.equal(
    backoffDelay(1, 100, 5000, () => 0),
    50,
  );
  assert.equal(
    backoffDelay(1, 100, 5000, () => 1),
    100,
  );
  assert.equal(
    backoffDelay(4, 100, 5000, () => 1),
    800,
  );
  assert.equal(
    backoffDelay(50, 100, 5000, () => 0),
    2500,
  );
  assert.equal(
    backoffDelay(50, 100, 5000, () => 1),
    5000,
  );
});

test("redactUrl masks the password", () => {
  assert.equal(redactUrl("redis://:s3cret@db:6379/0"), "redis://:***@db:6379/0");
  assert.equal(redactUrl("redis://db:6379"), "redis://db:6379");
});

test("the constructor rejects a URL that is not redis://", () => {
  assert.throws(() => new RedisBroker({ url: "http://localhost:6379" }), /invalid url "http:\/\/localhost:6379"/);
});

test("start rejects within its timeout, naming the URL, when Redis is not there", async () => {
  const port = await freePort();
  const broker = new RedisBroker({ url: `redis://127.0.0.1:${port}`, startTimeoutMs: 300, retryBaseMs: 20 });
  // The message names the start timeout: that timer, not a connect or command timeout, gave up.
  await assert.rejects(
    broker.start(() => {}),
    (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.match(err.message, new RegExp(`cannot reach Redis at redis://127\\.0\\.0\\.1:${port} within 300 ms`));
      assert.match(err.message, /ECONNREFUSED/);
      return true;
    },
  );
  assert.equal(broker.isReady(), false);
  await broker.close();
});

describe("RedisBroker against a real redis-server", () => {
  let redis: RedisProcess;
  const open: Array<{ close(): Promise<unknown> }> = [];

  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.stop();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.close()));
  });

  async function broker(
    handler: (channel: string, e: Envelope) => void,
    options: Partial<RedisBrokerOptions> = {},
  ): Promise<RedisBroker> {
    const b = new RedisBroker({ url: redis.url, retryBaseMs: 20, retryMaxMs: 200, ...options });
    open.push(b);
    await b.start(handler);
    return b;
  }

  async function rawClient(): Promise<Redis> {
    const client = new Redis(redis.url, { lazyConnect: true });
    open.push({ close: () => client.quit() });
    await client.connect();
    return client;
  }

  test("a malformed message is logged and dropped; the next envelope still arrives", async () => {
    const { logger, lines } = capturedLogger();
    const received: string[] = [];
    const b = await broker((_ch, e) => received.push(e.data), { logger });
    await b.subscribe("malformed");
    const raw = await rawClient();
    await raw.publish("malformed", "no header line");
    await raw.publish("malformed", '{"k":"bogus","n":"x"}\n{}');
    await raw.publish("malformed", '{"k":"message","n":"x"}\n{"ok":true}');
    await waitUntil("the valid envelope arrives", () => received.length === 1);
    assert.deepEqual(received, ['{"ok":true}']);
    assert.equal(b.stats().malformed, 2);
    assert.equal(b.stats().delivered, 1);
    assert.equal(lines.filter((l) => l.msg === "dropped a message that is not an envelope").length, 2);
    assert.equal(b.isReady(), true);
  });

  test("a throwing delivery handler does not break delivery", async () => {
    const received: string[] = [];
    const b = await broker((_ch, e) => {
      received.push(e.data);
      if (e.data === "boom") throw new Error("handler bug");
    });
    await b.subscribe("throws");
    await b.publish("throws", envelope("boom"));
    await b.publish("throws", envelope("after"));
    await waitUntil("both envelopes arrive", () => received.length === 2);
    assert.deepEqual(received, ["boom", "after"]);
  });

  test("counts published envelopes", async () => {
    const b = await broker(() => {});
    await b.publish("nobody-listens", envelope("a"));
    await b.publish("nobody-listens", envelope("b"));
    assert.equal(b.stats().published, 2);
  });

  test("SIGKILLed Redis: not ready, publishes rejected fast; after restart ready and subscriptions deliver again", async () => {
    const received: Array<{ channel: string; data: string }> = [];
    const b = await broker((channel, e) => received.push({ channel, data: e.data }));
    const transitions: boolean[] = [];
    b.onReadyChange((ready) => transitions.push(ready));
    await b.subscribe("before-outage");

    await redis.kill("SIGKILL");
    await waitUntil("the broker reports not ready", () => !b.isReady());
    assert.deepEqual(transitions, [false]);

    const lost = b.publish("before-outage", envelope("lost"));
    assert.ok(await settlesAtOnce(lost), "a publish while down is rejected at once, not queued or timed out");
    await assert.rejects(lost, assertUnavailable);
    assert.equal(b.stats().publishFailed, 1);
    // A subscribe while down is not live, so it rejects; the wish is kept and applied on reconnect.
    await assert.rejects(b.subscribe("during-outage"), assertUnavailable);
    // An unsubscribe while down simply takes effect: the reconnect will not restore it.
    await b.subscribe("dropped-during-outage").catch(() => {});
    await b.unsubscribe("dropped-during-outage");

    await redis.restart();
    await waitUntil("the broker is ready again", () => b.isReady());
    assert.deepEqual(transitions, [false, true]);
    assert.equal(b.stats().recoveries, 1);

    // Published by another client, so delivery proves the subscriptions are live on Redis, not just locally.
    const raw = await rawClient();
    const numsub = await raw.call("PUBSUB", "NUMSUB", "before-outage", "during-outage", "dropped-during-outage");
    assert.deepEqual(numsub, ["before-outage", 1, "during-outage", 1, "dropped-during-outage", 0]);
    await raw.publish("before-outage", '{"k":"message","n":"peer"}\n"again"');
    await raw.publish("during-outage", '{"k":"message","n":"peer"}\n"new"');
    await waitUntil("both channels deliver", () => received.length === 2);
    assert.deepEqual(received, [
      { channel: "before-outage", data: '"again"' },
      { channel: "during-outage", data: '"new"' },
    ]);
    await b.publish("before-outage", envelope("own"));
    await waitUntil("its own publication comes back", () => received.length === 3);
    assert.equal(b.channelCount(), 2);
  });

  test("health-check PINGs leave a healthy broker alone, subscriptions included", async () => {
    const received: string[] = [];
    const b = await broker((_ch, e) => received.push(e.data), { healthCheckMs: 10 });
    const transitions: boolean[] = [];
    b.onReadyChange((ready) => transitions.push(ready));
    await b.subscribe("pinged");
    const admin = await rawClient();
    const pings = async (): Promise<number> => {
      const info = await admin.info("commandstats");
      return Number(/cmdstat_ping:calls=(\d+)/.exec(info)?.[1] ?? 0);
    };
    const before = await pings();
    // Several rounds on both connections, the subscriber one in subscribed mode.
    await waitUntil("ten PINGs went by", async () => (await pings()) >= before + 10);
    assert.deepEqual(transitions, []);
    assert.equal(b.isReady(), true);
    await b.publish("pinged", envelope("still-flows"));
    await waitUntil("delivery still works", () => received.length === 1);
  });

  test("a Redis that stops answering (CLIENT PAUSE) is detected by the health check", async () => {
    const received: string[] = [];
    const b = await broker((_ch, e) => received.push(e.data), { healthCheckMs: 50, timeoutMs: 200 });
    await b.subscribe("paused");
    const transitions: boolean[] = [];
    b.onReadyChange((ready) => transitions.push(ready));
    const admin = await rawClient();
    // The sockets stay open, so only an unanswered PING can tell.
    await admin.call("CLIENT", "PAUSE", "1000", "ALL");
    await waitUntil("the broker reports not ready", () => !b.isReady(), 3000);
    await assert.rejects(b.publish("paused", envelope("x")), assertUnavailable);
    await waitUntil("the broker is ready again after the pause", () => b.isReady(), 10_000);
    assert.equal(transitions[0], false);
    assert.equal(transitions.at(-1), true);
    await b.publish("paused", envelope("resubscribed"));
    await waitUntil("the subscription delivers again", () => received.length === 1);
    assert.deepEqual(received, ["resubscribed"]);
  });
});
