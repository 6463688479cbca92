import assert from "node:assert/strict";
import { test } from "node:test";
import { validateConfig } from "../config/load.js";
import { redactUrl } from "./connection.js";
import { parseSentinelUrl } from "./url.js";

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
