// History in Redis beyond the shared contract (RedisBroker.append writes,
// RedisHistory reads): the exact bytes on the channel, the keys and their
// expiry, error classification, and a Redis that stalls, dies (SIGKILL) and
// comes back empty.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { ProtocolError, type StreamPosition } from "crier-protocol";
import { Redis } from "ioredis";
import { freePort, type RedisProcess, startRedis } from "../../../../test/support/redis.js";
import { settlesAtOnce, waitUntil } from "../../../../test/support/wait.js";
import { type Envelope, encodeEnvelope } from "../broker/envelope.js";
import { RedisBroker } from "../broker/redis.js";
import type { HistoryOptions, HistoryRead, ReadOptions } from "./history.js";
import { RedisHistory, type RedisHistoryOptions } from "./redis.js";

const PREFIX = "crier-test:";
const KEEP: HistoryOptions = { size: 100, ttlMs: 60_000 };
const DAY = 24 * 60 * 60 * 1000;

const message = (room: string, data: string): Envelope => ({ kind: "message", room, node: "n1", data });

function assertCode(code: string): (err: unknown) => true {
  return (err) => {
    assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  };
}

/** The Redis engine's history half: appends through a broker, reads through the store, as a crier instance does. */
class RedisHistoryEngine {
  readonly broker: RedisBroker;
  readonly store: RedisHistory;
  constructor(options: RedisHistoryOptions) {
    this.store = new RedisHistory(options);
    const { url, prefix, timeoutMs, retryBaseMs, retryMaxMs } = options;
    this.broker = new RedisBroker({ url, prefix, timeoutMs, retryBaseMs, retryMaxMs, healthCheckMs: 0 });
  }
  async start(timeoutMs?: number): Promise<void> {
    await Promise.all([this.broker.start(() => {}), this.store.start(timeoutMs)]);
  }
  publish(room: string, channel: string, envelope: Envelope, options: HistoryOptions): Promise<StreamPosition> {
    return this.broker.append(channel, envelope, { room, ...options });
  }
  read(room: string, options: ReadOptions & { ttlMs: number }): Promise<HistoryRead> {
    return this.store.read(room, options);
  }
  isReady(): boolean {
    return this.broker.isReady() && this.store.isReady();
  }
  async close(): Promise<void> {
    await Promise.all([this.broker.close(), this.store.close()]);
  }
}

test("the constructor rejects a key prefix with braces, which would break the rooms' hash tags", () => {
  assert.throws(() => new RedisHistory({ url: "redis://127.0.0.1:1", prefix: "app{x}:" }), /must not contain braces/);
});

test("with no Redis there, start rejects naming the URL and calls are unavailable at once", async () => {
  const port = await freePort();
  const store = new RedisHistoryEngine({ url: `redis://127.0.0.1:${port}`, retryBaseMs: 20 });
  await assert.rejects(
    store.store.start(300),
    new RegExp(`cannot reach Redis at redis://127\\.0\\.0\\.1:${port} within 300`),
  );
  const publish = store.publish("r", "ch", message("r", "1"), KEEP);
  assert.ok(await settlesAtOnce(publish), "publish with no Redis is rejected at once, not after a timeout");
  await assert.rejects(publish, assertCode("unavailable"));
  const read = store.read("r", { ttlMs: 1000 });
  assert.ok(await settlesAtOnce(read), "read with no Redis is rejected at once, not after a timeout");
  await assert.rejects(read, assertCode("unavailable"));
  await store.close();
});

/** `unavailable`, because a command timed out. */
function timedOut(err: unknown): true {
  assertCode("unavailable")(err);
  assert.match(String((err as Error).message), /timed? ?out/i);
  return true;
}

describe("RedisHistory against a real redis-server", () => {
  let redis: RedisProcess;
  let roomSeq = 0;
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

  const freshRoom = (name: string): { room: string; channel: string } => {
    roomSeq += 1;
    const room = `t${roomSeq}:${name}`;
    return { room, channel: `${PREFIX}room:${room}` };
  };

  async function store(options: Partial<RedisHistoryOptions> = {}): Promise<RedisHistoryEngine> {
    const s = new RedisHistoryEngine({ url: redis.url, prefix: PREFIX, retryBaseMs: 20, retryMaxMs: 200, ...options });
    open.push(s);
    await s.start();
    return s;
  }

  async function rawClient(): Promise<Redis> {
    const client = new Redis(redis.url, { lazyConnect: true });
    open.push({ close: () => client.quit() });
    await client.connect();
    return client;
  }

  test("the channel carries exactly encodeEnvelope's bytes with the assigned offset and epoch", async () => {
    const s = await store();
    const { room, channel } = freshRoom("bytes");
    const sub = await rawClient();
    const received: string[] = [];
    sub.on("message", (_ch: string, text: string) => received.push(text));
    await sub.subscribe(channel);
    const sent: Envelope = {
      kind: "message",
      room,
      node: "n\u00e9",
      from: 'a "quoted" \\ user',
      code: 7,
      reason: "after the position",
      data: '{"text":"two\\nlines \u2603","n":[1,2.5]}',
    };
    const position = await s.publish(room, channel, sent, KEEP);
    await waitUntil("the publication arrives", () => received.length === 1);
    assert.deepEqual(received, [encodeEnvelope({ ...sent, ...position })]);
    const [stored] = (await s.read(room, { ttlMs: KEEP.ttlMs })).messages;
    assert.deepEqual(stored, { ...sent, ...position });
  });

  test("a room's stream and meta hash share its hash tag and expire after ttl and max(ttl, 24h)", async () => {
    const s = await store();
    const admin = await rawClient();
    const { room, channel } = freshRoom("keys");
    const position = await s.publish(room, channel, message(room, "1"), { size: 10, ttlMs: 5000 });
    const stream = `${PREFIX}history:{${room}}`;
    const meta = `${PREFIX}meta:{${room}}`;
    assert.equal(await admin.type(stream), "stream");
    assert.deepEqual(await admin.hgetall(meta), { epoch: position.epoch, offset: "1" });
    const streamTtl = await admin.pttl(stream);
    const metaTtl = await admin.pttl(meta);
    assert.ok(streamTtl > 0 && streamTtl <= 5000, `stream pttl ${streamTtl}`);
    assert.ok(metaTtl > DAY - 60_000 && metaTtl <= DAY, `meta pttl ${metaTtl}`);

    const { room: longRoom, channel: longChannel } = freshRoom("long");
    await s.publish(longRoom, longChannel, message(longRoom, "1"), { size: 10, ttlMs: 2 * DAY });
    const longMetaTtl = await admin.pttl(`${PREFIX}meta:{${longRoom}}`);
    assert.ok(longMetaTtl > 2 * DAY - 60_000, `meta pttl ${longMetaTtl} for a 48h ttl`);
  });

  test("size trims the stream exactly", async () => {
    const s = await store();
    const admin = await rawClient();
    const { room, channel } = freshRoom("maxlen");
    for (let i = 0; i < 7; i++) await s.publish(room, channel, message(room, String(i)), { size: 3, ttlMs: 60_000 });
    assert.equal(await admin.xlen(`${PREFIX}history:{${room}}`), 3);
  });

  test("a lost meta hash starts a new epoch from offset 1, clearing what the stream held", async () => {
    const s = await store();
    const admin = await rawClient();
    const { room, channel } = freshRoom("meta-lost");
    const first = await s.publish(room, channel, message(room, "1"), KEEP);
    await s.publish(room, channel, message(room, "2"), KEEP);
    await admin.del(`${PREFIX}meta:{${room}}`);

    const reborn = await s.publish(room, channel, message(room, "3"), KEEP);
    assert.equal(reborn.offset, 1);
    assert.notEqual(reborn.epoch, first.epoch);
    const read = await s.read(room, { since: first, ttlMs: KEEP.ttlMs });
    assert.equal(read.complete, false);
    const latest = await s.read(room, { ttlMs: KEEP.ttlMs });
    assert.deepEqual(
      latest.messages.map((m) => [m.offset, m.data]),
      [[1, "3"]],
    );
  });

  test("an error reply that is not about availability is internal", async () => {
    const s = await store();
    const admin = await rawClient();
    const { room, channel } = freshRoom("wrongtype");
    await s.publish(room, channel, message(room, "1"), KEEP);
    await admin.set(`${PREFIX}history:{${room}}`, "not a stream");
    await assert.rejects(s.publish(room, channel, message(room, "1"), KEEP), assertCode("internal"));
  });

  test("a Redis that stops answering (CLIENT PAUSE): publish and read reject with the timeout, not when Redis answers", async () => {
    const s = await store({ timeoutMs: 200 });
    const admin = await rawClient();
    const { room, channel } = freshRoom("paused");
    // WRITE mode holds the scripts (they write) yet lets the admin connection unpause.
    // The pause outlasts the test's own deadline: a call that waited for Redis to
    // answer would hang, and one that got through would not reject, so a rejection
    // naming the timeout is the store's own timeout at work.
    await admin.call("CLIENT", "PAUSE", "600000", "WRITE");
    try {
      await assert.rejects(s.publish(room, channel, message(room, "1"), KEEP), timedOut);
      await assert.rejects(s.read(room, { ttlMs: 1000 }), timedOut);
    } finally {
      await admin.call("CLIENT", "UNPAUSE");
    }
  });

  test("SIGKILLed Redis: unavailable at once while down; back empty, a new epoch and old positions incomplete", async () => {
    const s = await store();
    const { room, channel } = freshRoom("crash");
    await s.publish(room, channel, message(room, "1"), KEEP);
    const before = await s.publish(room, channel, message(room, "2"), KEEP);

    await redis.kill("SIGKILL");
    await waitUntil("the store sees Redis gone", () => !s.isReady());
    const lost = s.publish(room, channel, message(room, "lost"), KEEP);
    assert.ok(await settlesAtOnce(lost), "publish while down is rejected at once");
    await assert.rejects(lost, assertCode("unavailable"));
    const read = s.read(room, { since: before, ttlMs: KEEP.ttlMs });
    assert.ok(await settlesAtOnce(read), "read while down is rejected at once");
    await assert.rejects(read, assertCode("unavailable"));

    await redis.restart();
    await waitUntil("the store reconnects", () => s.isReady());
    const after = await s.read(room, { since: before, ttlMs: KEEP.ttlMs });
    assert.equal(after.complete, false);
    assert.deepEqual(after.messages, []);
    assert.equal(after.position.offset, 0);
    assert.notEqual(after.position.epoch, before.epoch);
    // The scripts were lost with the restart too: EVALSHA falls back to loading them.
    assert.deepEqual(await s.publish(room, channel, message(room, "3"), KEEP), {
      offset: 1,
      epoch: after.position.epoch,
    });
  });
});
