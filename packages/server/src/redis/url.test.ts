import assert from "node:assert/strict";
import { test } from "node:test";
import { validateConfig } from "../config/load.js";
import { redactUrl } from "./connection.js";
import { keySlot } from "./slot.js";
import { isClusterUrl, parseClusterUrl, parseSentinelUrl } from "./url.js";

test("a redis+sentinel:// URL names the sentinels, the master, and optionally auth, db and the sentinels' password", () => {
  assert.deepEqual(parseSentinelUrl("redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/mymaster"), {
    sentinels: [
      { host: "10.0.0.1", port: 26379 },
      { host: "10.0.0.2", port: 26380 },
    ],
    name: "mymaster",
  });
  assert.deepEqual(parseSentinelUrl("redis+sentinel://user:p%40ss@sentinel/main/3?sentinelPassword=s3"), {
    sentinels: [{ host: "sentinel", port: 26379 }],
    name: "main",
    username: "user",
    password: "p@ss",
    db: 3,
    sentinelPassword: "s3",
  });
  const ipv6 = parseSentinelUrl("redis+sentinel://:secret@[::1]:26380,[::2]/m");
  assert.equal(ipv6.password, "secret");
  assert.deepEqual(ipv6.sentinels, [
    { host: "::1", port: 26380 },
    { host: "::2", port: 26379 },
  ]);
});

test("a malformed redis+sentinel:// URL says what is wrong and what it should look like", () => {
  assert.throws(
    () => parseSentinelUrl("redis+sentinel://10.0.0.1:26379"),
    /no master name.*expected redis\+sentinel:\/\//,
  );
  assert.throws(() => parseSentinelUrl("redis+sentinel://10.0.0.1:x/m"), /sentinel '10.0.0.1:x' is not HOST:PORT/);
  assert.throws(() => parseSentinelUrl("redis+sentinel://h:1/m/db"), /database 'db' is not a whole number/);
  assert.throws(() => parseSentinelUrl("redis+sentinel://h:1/m/0/x"), /no master name/);
});

test("the configuration accepts redis+sentinel:// and names the key when the URL is wrong", () => {
  assert.equal(
    validateConfig({ redis: "redis+sentinel://127.0.0.1:26379/m" }).redis,
    "redis+sentinel://127.0.0.1:26379/m",
  );
  assert.throws(() => validateConfig({ redis: "redis+sentinel://127.0.0.1:26379" }), /redis.*no master name/s);
  assert.throws(() => validateConfig({ redis: "http://127.0.0.1" }), /redis\+sentinel:\/\//);
});

test("passwords are masked in logged sentinel URLs", () => {
  assert.equal(
    redactUrl("redis+sentinel://user:secret@h1:1,h2:2/m?sentinelPassword=s3"),
    "redis+sentinel://***@h1:1,h2:2/m?sentinelPassword=***",
  );
  assert.equal(redactUrl("redis+sentinel://h1:1/m"), "redis+sentinel://h1:1/m");
});

test("a redis+cluster:// URL lists startup nodes, with optional auth, and rediss+cluster:// asks for TLS", () => {
  assert.deepEqual(parseClusterUrl("redis+cluster://10.0.0.1:7000,10.0.0.2"), {
    nodes: [
      { host: "10.0.0.1", port: 7000 },
      { host: "10.0.0.2", port: 6379 },
    ],
    tls: false,
  });
  assert.deepEqual(parseClusterUrl("rediss+cluster://app:p%40ss@[::1]:7001/"), {
    nodes: [{ host: "::1", port: 7001 }],
    tls: true,
    username: "app",
    password: "p@ss",
  });
  assert.equal(isClusterUrl("redis+cluster://h:1"), true);
  assert.equal(isClusterUrl("redis://h:1"), false);
});

test("a malformed redis+cluster:// URL says what is wrong; the configuration names the key", () => {
  assert.throws(
    () => parseClusterUrl("redis+cluster://h:x"),
    /node 'h:x' is not HOST:PORT; expected redis\+cluster:\/\//,
  );
  assert.throws(() => parseClusterUrl("redis+cluster://h:1/2"), /no database, path or query/);
  assert.throws(() => parseClusterUrl("redis+cluster://"), /node '' is not HOST:PORT/);
  assert.equal(validateConfig({ redis: "redis+cluster://h:1,h:2" }).redis, "redis+cluster://h:1,h:2");
  assert.throws(() => validateConfig({ redis: "redis+cluster://h:1?x=1" }), /"redis".*no database, path or query/s);
  assert.throws(() => validateConfig({ redis: "cluster://h:1" }), /redis\+cluster:\/\//);
});

test("passwords are masked in logged cluster URLs", () => {
  assert.equal(redactUrl("redis+cluster://app:secret@h1:1,h2:2"), "redis+cluster://app:***@h1:1,h2:2");
  assert.equal(redactUrl("rediss+cluster://:secret@h1:1"), "rediss+cluster://:***@h1:1");
  assert.equal(redactUrl("redis+cluster://h1:1"), "redis+cluster://h1:1");
});

test("keySlot agrees with CLUSTER KEYSLOT, hash tags included", () => {
  // Values from redis-server 7.0's CLUSTER KEYSLOT.
  assert.equal(keySlot("foo"), 12182);
  assert.equal(keySlot("crier:room:{abc}"), 7638);
  assert.equal(keySlot("{user1000}.following"), 3443);
  assert.equal(keySlot("x{}y"), 16116, "an empty tag is no tag: the whole key counts");
  assert.equal(keySlot("é{ü}"), 9552, "UTF-8 bytes");
  assert.equal(keySlot("crier:history:{abc}"), keySlot("crier:room:{abc}"), "a room's keys and channel share a slot");
});
