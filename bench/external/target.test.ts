// The bounds on a run against a deployment the bench does not own, and the
// --url, --pid, auth and --room-prefix flags, all checked before anything
// connects.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Plan } from "../scenarios/scenario.js";
import { UsageError } from "../usage.js";
import { checkBounds, deliveriesPerSecond, EXTERNAL_LIMITS, maxRate, parseExternal } from "./target.js";

function plan(fanouts: number[], rate: number, connections = 10): Plan {
  return {
    summary: "test",
    instances: 1,
    conns: Array.from({ length: connections }, () => ({ instance: 0, rooms: ["r"] })),
    publishers: fanouts.map((fanout, conn) => ({ conn, kind: "room", targets: ["r"], fanout })),
    rate,
    payloadBytes: 100,
    needsTokens: false,
  };
}

const usage = (message: RegExp) => (error: unknown) => error instanceof UsageError && message.test(error.message);

describe("bounds against --url", () => {
  test("deliveries per second: the rate times the publishers' mean fan-out", () => {
    assert.equal(deliveriesPerSecond(plan([10, 30], 100), 100), 2000);
    assert.equal(deliveriesPerSecond(plan([], 0), 100), 0);
  });

  test("the highest rate is bounded by publishes/s and by deliveries/s, whichever is lower", () => {
    assert.equal(maxRate(plan([1], 1)), EXTERNAL_LIMITS.publishesPerSecond);
    assert.equal(maxRate(plan([100], 1)), EXTERNAL_LIMITS.deliveriesPerSecond / 100);
    assert.equal(maxRate(plan([30], 1)), Math.floor(EXTERNAL_LIMITS.deliveriesPerSecond / 30));
  });

  test("too many connections, too high a rate, too long a run or warm-up are refused, saying the limit", () => {
    const window = { durationSeconds: 10, warmupSeconds: 2 };
    checkBounds(plan([100], 2000), window);
    assert.throws(
      () => checkBounds(plan([100], 2001), window),
      usage(/2001 publishes\/s \(about 200100 deliveries\/s\) is past the bounds .* at most 2000 publishes\/s/),
    );
    assert.throws(
      () => checkBounds(plan([1], 1, EXTERNAL_LIMITS.connections + 1), window),
      usage(/10001 connections is more than the 10000/),
    );
    assert.throws(() => checkBounds(plan([1], 1), { ...window, durationSeconds: 0 }), usage(/--duration/));
    assert.throws(() => checkBounds(plan([1], 1), { ...window, durationSeconds: 121 }), usage(/--duration/));
    checkBounds(plan([1], 1), { durationSeconds: 120, warmupSeconds: 30 });
    assert.throws(() => checkBounds(plan([1], 1), { ...window, warmupSeconds: 31 }), usage(/--warmup .* at most 30 s/));
  });
});

describe("parseExternal", () => {
  test("URLs become endpoints: port defaults, TLS, IPv6 without brackets, the API origin, path and query kept", () => {
    const target = parseExternal({ url: "ws://a.test/ws, wss://[::1]:8443/c?x=1" }, "chat");
    assert.deepEqual(target.urls, ["ws://a.test/ws", "wss://[::1]:8443/c?x=1"]);
    assert.deepEqual(target.endpoints, [
      { host: "a.test", port: 80, tls: false, path: "/ws", api: "http://a.test" },
      { host: "::1", port: 8443, tls: true, path: "/c?x=1", api: "https://[::1]:8443" },
    ]);
    assert.deepEqual(target.auth, { kind: "anonymous" });
    assert.deepEqual(target.pids, []);
    assert.match(target.runId, /^[0-9a-z]{6}$/);
    assert.equal(target.roomPrefix, `bench:${target.runId}:`);
    assert.equal(target.userPrefix, `bench-${target.runId}-`);
  });

  test("auth from --token or --jwt-secret; --pid reads this machine's processes, one per URL", () => {
    assert.deepEqual(parseExternal({ url: "ws://h/ws", token: "t" }, "chat").auth, { kind: "token", token: "t" });
    assert.deepEqual(parseExternal({ url: "ws://h/ws", "jwt-secret": "s" }, "direct").auth, {
      kind: "jwt-secret",
      secret: "s",
    });
    assert.deepEqual(parseExternal({ url: "ws://h/ws", pid: String(process.pid) }, "idle").pids, [process.pid]);
    assert.equal(parseExternal({ url: "ws://h/ws", "api-key": "k" }, "chat").apiKey, "k");
  });

  const refused: Array<[string, Parameters<typeof parseExternal>[0], string, RegExp]> = [
    ["sparse from outside", { url: "ws://h/ws" }, "sparse", /sparse cannot run against --url/],
    ["no URL", { url: " , " }, "chat", /--url needs at least one ws:\/\/ or wss:\/\/ URL/],
    ["not a URL", { url: "nope" }, "chat", /'nope' is not a URL/],
    ["http", { url: "http://h/ws" }, "chat", /must start with ws:\/\/ or wss:\/\//],
    ["credentials", { url: "ws://u:p@h/ws" }, "chat", /carries credentials/],
    ["token and secret", { url: "ws://h/ws", token: "t", "jwt-secret": "s" }, "chat", /not both/],
    ["direct without a secret", { url: "ws://h/ws" }, "direct", /direct needs one user per connection/],
    ["a pid that is not one", { url: "ws://h/ws", pid: "x" }, "chat", /--pid takes process ids, not x/],
    ["a pid per URL", { url: "ws://h/ws,ws://i/ws", pid: String(process.pid) }, "chat", /one process id per URL/],
    ["a room prefix with spaces", { url: "ws://h/ws", "room-prefix": "a b" }, "chat", /--room-prefix must be/],
  ];
  for (const [name, flags, scenario, message] of refused) {
    test(`refused: ${name}`, () => {
      assert.throws(() => parseExternal(flags, scenario), usage(message));
    });
  }

  test("at most 64 URLs", () => {
    const urls = (n: number) => Array.from({ length: n }, (_, i) => `ws://h${i}/ws`).join(",");
    assert.equal(parseExternal({ url: urls(64) }, "chat").urls.length, 64);
    assert.throws(() => parseExternal({ url: urls(65) }, "chat"), usage(/at most 64 URLs/));
  });
});
