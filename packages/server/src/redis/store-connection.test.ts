// StoreConnection against a real redis-server: ready and not ready, failing
// fast while down, calls in flight settled when the connection drops, reconnect
// (with onReconnect), error classification, scripts that survive a flushed
// script cache, and close() that is idempotent.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { ProtocolError } from "crier-protocol";
import { Redis } from "ioredis";
import { freePort, type RedisProcess, startRedis } from "../../../../test/support/redis.js";
import { settlesAtOnce, waitUntil } from "../../../../test/support/wait.js";
import { StoreConnection, type StoreConnectionOptions } from "./store-connection.js";

function assertCode(code: string, message?: RegExp): (err: unknown) => true {
  return (err) => {
    assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (message !== undefined) assert.match(err.message, message);
    return true;
  };
}

test("with no Redis there: start rejects naming the URL, not ready, and calls are unavailable at once", async () => {
  const port = await freePort();
  const conn = new StoreConnection({ url: `redis://127.0.0.1:${port}`, component: "test", retryBaseMs: 20 });
  try {
    await assert.rejects(
      conn.start(300),
      new RegExp(`redis test: cannot reach Redis at redis://127\\.0\\.0\\.1:${port} within 300 ms`),
    );
    assert.equal(conn.isReady(), false);
    let ran = false;
    const call = conn.call("ping", async () => {
      ran = true;
      return conn.redis.ping();
    });
    assert.ok(await settlesAtOnce(call), "a call while Redis is unreachable is rejected at once");
    await assert.rejects(
      call,
      assertCode("unavailable", /ping failed: redis at redis:\/\/127\.0\.0\.1:\d+ is unreachable/),
    );
    assert.equal(ran, false, "nothing was sent");
  } finally {
    await conn.close();
  }
});

test("the URL's password is masked in the connection's url", async () => {
  const port = await freePort();
  const conn = new StoreConnection({ url: `redis://user:s3cret@127.0.0.1:${port}`, component: "test" });
  try {
    assert.equal(conn.url, `redis://user:***@127.0.0.1:${port}`);
  } finally {
    await conn.close();
  }
});

describe("StoreConnection against a real redis-server", () => {
  let redis: RedisProcess;
  const open: StoreConnection[] = [];

  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.stop();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((conn) => conn.close()));
  });

  function connection(options: Partial<StoreConnectionOptions> = {}): StoreConnection {
    const conn = new StoreConnection({
      url: redis.url,
      component: "test",
      retryBaseMs: 20,
      retryMaxMs: 200,
      ...options,
    });
    open.push(conn);
    return conn;
  }

  test("start resolves once Redis answers; the connection is ready and names itself to Redis", async () => {
    const conn = connection();
    await conn.start();
    assert.equal(conn.isReady(), true);
    assert.equal(await conn.call("ping", () => conn.redis.ping()), "PONG");
    assert.equal(await conn.redis.client("GETNAME"), "crier-test");
    // Starting again when ready is a no-op.
    await conn.start();
  });

  test("a call right after construction waits for the first connection attempt instead of failing", async () => {
    const conn = connection();
    assert.equal(await conn.call("ping", () => conn.redis.ping()), "PONG");
  });

  test("an error reply is internal; a reply saying Redis cannot serve for now is unavailable", async () => {
    const conn = connection();
    await conn.start();
    await assert.rejects(
      conn.call("bogus", () => conn.redis.call("NO-SUCH-COMMAND")),
      assertCode("internal", /bogus failed: ERR unknown command/),
    );
    for (const reply of ["OOM command not allowed", "READONLY replica", "BUSY script", "LOADING dataset"]) {
      await assert.rejects(
        conn.call("eval", () => conn.redis.eval(`return redis.error_reply('${reply}')`, 0)),
        assertCode("unavailable", new RegExp(`eval failed: ${reply}`)),
      );
    }
    assert.equal(conn.isReady(), true, "error replies leave the connection up");
  });

  test("a script runs as EVALSHA and survives a flushed script cache", async () => {
    const conn = connection();
    await conn.start();
    const incrBy = conn.script("testIncrBy", 1, "return redis.call('INCRBY', KEYS[1], ARGV[1])");
    assert.equal(await conn.call("incr", () => incrBy("store-connection:n", 2)), 2);
    await conn.redis.script("FLUSH");
    assert.equal(await conn.call("incr", () => incrBy("store-connection:n", 3)), 5);
  });

  test("SIGKILLed Redis: calls in flight rejected, not ready, fast failures; after restart ready again and onReconnect once", async () => {
    let reconnects = 0;
    const conn = connection({ onReconnect: () => reconnects++ });
    // Another client, to watch Redis while the connection under test is blocked.
    const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    await admin.connect();
    await conn.start();
    assert.equal(reconnects, 0, "the first connection is not a reconnect");
    // A call Redis holds (a blocking pop with no timeout) is in flight when Redis dies.
    const blocked = conn.call("blpop", () => conn.redis.blpop("store-connection:never", 0));
    await waitUntil("Redis holds the blocking call", async () => /blocked_clients:1/.test(await admin.info("clients")));
    admin.disconnect();
    const rejected = assert.rejects(blocked, assertCode("unavailable", /blpop failed: connection to redis at .* lost/));
    await redis.kill("SIGKILL");
    await rejected;
    await waitUntil("the connection reports not ready", () => !conn.isReady());
    const down = conn.call("ping", () => conn.redis.ping());
    assert.ok(await settlesAtOnce(down), "a call while down is rejected at once");
    await assert.rejects(down, assertCode("unavailable", /unreachable/));

    await redis.restart();
    await waitUntil("the connection is ready again", () => conn.isReady());
    assert.equal(reconnects, 1);
    assert.equal(await conn.call("ping", () => conn.redis.ping()), "PONG");
  });

  test("close is idempotent, settles calls in flight, and leaves calls and start refused", async () => {
    const conn = connection();
    await conn.start();
    const blocked = conn.call("blpop", () => conn.redis.blpop("store-connection:closing", 0));
    const rejected = assert.rejects(blocked, assertCode("unavailable", /the test store is closed/));
    const first = conn.close();
    assert.equal(conn.close(), first, "a second close() is the same close");
    await rejected;
    await first;
    await conn.close();
    assert.equal(conn.isReady(), false);
    await assert.rejects(
      conn.call("ping", () => conn.redis.ping()),
      assertCode("unavailable", /the test store is closed/),
    );
    await assert.rejects(conn.start(), /start\(\) after close\(\)/);
    // Ended for good: no reconnect is pending (QUIT's reply may come a moment before the socket's end).
    await waitUntil("the ioredis connection has ended", () => conn.redis.status === "end");
  });
});
