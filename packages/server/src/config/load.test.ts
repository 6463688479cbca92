// loadConfig and validateConfig: defaults, sources and their precedence, and error
// messages that name the key, where it came from and what is allowed.

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ConfigError, type ConfigSources, loadConfig, unknownEnvironment, validateConfig } from "./load.js";

let dir = "";

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "crier-config-test-"));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

/** The problems loadConfig reports (fails when it accepts the sources). */
function problems(sources: ConfigSources): string[] {
  try {
    loadConfig(sources);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.ok(error.problems.length > 0);
    for (const problem of error.problems) assert.ok(error.message.includes(problem), "the message lists every problem");
    return error.problems;
  }
  assert.fail(`expected a ConfigError for ${JSON.stringify(sources)}`);
}

/** The single problem reported, checked to be the only one. */
function problem(sources: ConfigSources): string {
  const all = problems(sources);
  assert.equal(all.length, 1, all.join("\n"));
  return all[0] ?? "";
}

describe("defaults", () => {
  test("no sources give every default", () => {
    const config = loadConfig({});
    assert.equal(config.port, 8080);
    assert.equal(config.path, "/ws");
    assert.equal(config.host, undefined);
    assert.equal(config.apiKey, undefined);
    assert.equal(config.redis, undefined);
    assert.equal(config.redisPrefix, "crier:");
    assert.equal(config.allowAnonymous, undefined);
    assert.equal(config.clientSend, "authenticated");
    assert.equal(config.logLevel, "info");
    assert.deepEqual(config.jwt, {});
    assert.deepEqual(config.namespaces, {});
    assert.deepEqual(config.limits, {
      maxFrameBytes: 65_536,
      commandsPerSecond: 100,
      maxSubscriptions: 256,
      maxConnectionsPerIp: 1000,
      maxConnections: 100_000,
      connectionsPerSecond: 2000,
      connectionsPerSecondPerIp: 100,
      maxConnectionsPerUser: 100,
      apiAuthFailuresPerMinute: 20,
      apiAuthFailuresPerMinuteTotal: 100,
      outboundQueueBytes: 4 * 1024 * 1024,
      maxHttpBodyBytes: 1024 * 1024,
      maxInfoBytes: 2048,
    });
    assert.equal(config.allowedOrigins, undefined);
    assert.equal(config.metricsPort, undefined);
    assert.equal(config.metricsRequireKey, false);
    assert.deepEqual(config.timeouts, { connectMs: 10_000, pingMs: 25_000, pongMs: 10_000 });
    assert.deepEqual(config.cluster, { heartbeatMs: 2000, nodeTimeoutMs: 10_000 });
  });

  test("an empty environment and validateConfig({}) give the same defaults", () => {
    assert.deepEqual(loadConfig({ env: {} }), loadConfig({}));
    assert.deepEqual(validateConfig({}), loadConfig({}));
  });

  test("a partial nested object keeps the defaults of its other keys", () => {
    const config = validateConfig({ limits: { maxFrameBytes: 1024 }, namespaces: { chat: { publish: "none" } } });
    assert.equal(config.limits.maxFrameBytes, 1024);
    assert.equal(config.limits.commandsPerSecond, 100);
    assert.deepEqual(config.namespaces.chat, {
      subscribe: "public",
      publish: "none",
      presence: false,
      joinLeave: false,
    });
  });

  test("an empty env var counts as unset", () => {
    assert.equal(loadConfig({ env: { CRIER_PORT: "", CRIER_LOG_LEVEL: "" } }).port, 8080);
  });
});

describe("files", () => {
  test("a JSON file sets top-level and nested keys", async () => {
    const path = await file(
      "config.json",
      JSON.stringify({
        port: 9000,
        apiKey: "file-key-123",
        jwt: { secret: "s3cret", issuer: "https://issuer.example" },
        allowedOrigins: ["https://app.example.com"],
        namespaces: { chat: { publish: "token" } },
        timeouts: { ping: 5 },
      }),
    );
    const config = loadConfig({ file: path });
    assert.equal(config.port, 9000);
    assert.equal(config.apiKey, "file-key-123");
    assert.deepEqual(config.jwt, { secret: "s3cret", issuer: "https://issuer.example" });
    assert.deepEqual(config.allowedOrigins, ["https://app.example.com"]);
    assert.equal(config.namespaces.chat?.publish, "token");
    assert.deepEqual(config.timeouts, { connectMs: 10_000, pingMs: 5000, pongMs: 10_000 });
  });

  test("a YAML file (.yaml or .yml) is read as YAML", async () => {
    const yaml = [
      "port: 9100",
      "logLevel: debug",
      "allowAnonymous: false",
      "namespaces:",
      "  notify:",
      "    subscribe: token",
      "    publish: none",
      "limits:",
      "  maxSubscriptions: 10",
      "",
    ].join("\n");
    for (const name of ["config.yaml", "config.yml"]) {
      const config = loadConfig({ file: await file(name, yaml) });
      assert.equal(config.port, 9100);
      assert.equal(config.logLevel, "debug");
      assert.equal(config.allowAnonymous, false);
      assert.deepEqual(config.namespaces.notify, {
        subscribe: "token",
        publish: "none",
        presence: false,
        joinLeave: false,
      });
      assert.equal(config.limits.maxSubscriptions, 10);
    }
  });

  test("an empty file is an empty configuration", async () => {
    assert.deepEqual(loadConfig({ file: await file("empty.yaml", "") }), loadConfig({}));
  });

  test("CRIER_CONFIG names the file when no file is given", async () => {
    const path = await file("from-env.json", JSON.stringify({ port: 9200 }));
    assert.equal(loadConfig({ env: { CRIER_CONFIG: path } }).port, 9200);
  });

  test("a missing file names the file and the reason", () => {
    const path = join(dir, "does-not-exist.json");
    const message = problem({ file: path });
    assert.match(message, /cannot read config file/);
    assert.ok(message.includes(path), message);
    assert.match(message, /ENOENT|no such file/);
  });

  test("an unparsable JSON file names the file and the parse error", async () => {
    const path = await file("broken.json", '{"port": 80,');
    const message = problem({ file: path });
    assert.ok(message.includes(path), message);
    assert.match(message, /is not valid JSON or YAML/);
  });

  test("an unparsable YAML file names the file and the parse error", async () => {
    const path = await file("broken.yaml", "port: [1, 2\nlimits: {");
    const message = problem({ file: path });
    assert.ok(message.includes(path), message);
    assert.match(message, /is not valid JSON or YAML/);
  });

  test("a file that holds something other than an object says so", async () => {
    const path = await file("list.json", "[1, 2]");
    const message = problem({ file: path });
    assert.ok(message.includes(path), message);
    assert.match(message, /must hold an object/);
  });
});

describe("precedence", () => {
  test("env overrides the file, key by key, and keeps the file's other nested keys", async () => {
    const path = await file(
      "precedence.json",
      JSON.stringify({ port: 9000, logLevel: "warn", jwt: { issuer: "from-file" }, apiKey: "file-key-123" }),
    );
    const config = loadConfig({
      file: path,
      env: { CRIER_PORT: "9001", CRIER_JWT_SECRET: "env-secret", CRIER_UNRELATED: "x" },
    });
    assert.equal(config.port, 9001);
    assert.equal(config.logLevel, "warn");
    assert.equal(config.apiKey, "file-key-123");
    assert.deepEqual(config.jwt, { issuer: "from-file", secret: "env-secret" });
  });

  test("flags override env and the file", async () => {
    const path = await file("flags.json", JSON.stringify({ port: 9000, apiKey: "file-key-123" }));
    const config = loadConfig({
      file: path,
      env: { CRIER_PORT: "9001", CRIER_API_KEY: "env-key-1234", CRIER_ALLOW_ANONYMOUS: "false" },
      flags: { port: "9002", "allow-anonymous": true, "node-id": "node-a" },
    });
    assert.equal(config.port, 9002);
    assert.equal(config.apiKey, "env-key-1234");
    assert.equal(config.allowAnonymous, true);
    assert.equal(config.nodeId, "node-a");
  });

  test("flags that were not given leave env and file alone", () => {
    const config = loadConfig({ env: { CRIER_PORT: "9001" }, flags: { port: undefined, help: false } });
    assert.equal(config.port, 9001);
  });

  test("settings given directly are overridden by every other source", () => {
    const config = loadConfig({ values: { port: 1, logLevel: "error" }, env: { CRIER_PORT: "2" } });
    assert.equal(config.port, 2);
    assert.equal(config.logLevel, "error");
  });

  test("a file's nested object merges with settings given directly, key by key", async () => {
    const path = await file("nested.json", JSON.stringify({ limits: { maxSubscriptions: 5 } }));
    const config = loadConfig({ file: path, values: { limits: { commandsPerSecond: 7 } } });
    assert.equal(config.limits.maxSubscriptions, 5);
    assert.equal(config.limits.commandsPerSecond, 7);
  });

  test("a wrong-typed object in the file is reported even when an env var sets a key inside it", async () => {
    const path = await file("bad-jwt.json", JSON.stringify({ jwt: "x" }));
    const message = problem({ file: path, env: { CRIER_JWT_SECRET: "s3cret" } });
    assert.match(message, /"jwt"/);
  });

  test("unknown CRIER_* variables are named (likely typos); settings and test variables are not", () => {
    assert.deepEqual(
      unknownEnvironment({ CRIER_REDIS: "redis://x", CRIER_REDIS_URL: "redis://y", CRIER_CONFIG: "f", PATH: "/bin" }),
      ["CRIER_REDIS"],
    );
  });

  test("the file given directly wins over CRIER_CONFIG", async () => {
    const chosen = await file("chosen.json", JSON.stringify({ port: 9300 }));
    const ignored = await file("ignored.json", JSON.stringify({ port: 9400 }));
    assert.equal(loadConfig({ file: chosen, env: { CRIER_CONFIG: ignored } }).port, 9300);
  });
});

describe("env conversions", () => {
  test("booleans accept true/false, 1/0, yes/no, on/off in any case", () => {
    for (const raw of ["true", "1", "yes", "on", "TRUE", "Yes"]) {
      assert.equal(loadConfig({ env: { CRIER_ALLOW_ANONYMOUS: raw } }).allowAnonymous, true, raw);
    }
    for (const raw of ["false", "0", "no", "off", "False", "OFF"]) {
      assert.equal(loadConfig({ env: { CRIER_ALLOW_ANONYMOUS: raw } }).allowAnonymous, false, raw);
    }
  });

  test("a boolean env var with another value is an error naming the variable and the value", () => {
    const message = problem({ env: { CRIER_ALLOW_ANONYMOUS: "maybe" } });
    assert.match(message, /config key "allowAnonymous"/);
    assert.match(message, /from CRIER_ALLOW_ANONYMOUS/);
    assert.match(message, /expected boolean/);
    assert.match(message, /\(got "maybe"\)/);
  });

  test("comma lists are split, trimmed and skip empty items", () => {
    const config = loadConfig({
      env: { CRIER_ALLOWED_ORIGINS: "https://a.example, https://b.example ,,https://c.example," },
    });
    assert.deepEqual(config.allowedOrigins, ["https://a.example", "https://b.example", "https://c.example"]);
  });

  test("a comma list flag is split like the env var", () => {
    const config = loadConfig({ flags: { "allowed-origins": "https://a.example,https://b.example" } });
    assert.deepEqual(config.allowedOrigins, ["https://a.example", "https://b.example"]);
  });

  test("numbers are read from env and flags", () => {
    assert.equal(loadConfig({ env: { CRIER_PORT: " 8181 " } }).port, 8181);
    assert.equal(loadConfig({ flags: { port: "0" } }).port, 0);
  });

  test("strings are kept as written", () => {
    const config = loadConfig({
      env: { CRIER_REDIS_URL: "redis://127.0.0.1:6380", CRIER_REDIS_PREFIX: "app:", CRIER_PATH: "/live" },
    });
    assert.equal(config.redis, "redis://127.0.0.1:6380");
    assert.equal(config.redisPrefix, "app:");
    assert.equal(config.path, "/live");
  });
});

describe("errors name the key, where it came from and what is allowed", () => {
  test("an unknown top-level key lists the allowed keys and names the file", async () => {
    const path = await file("unknown.json", JSON.stringify({ port: 1, prot: 2 }));
    const message = problem({ file: path });
    assert.match(message, /unknown config key "prot" at the top level/);
    assert.ok(message.includes(path), message);
    const allowed = /allowed keys: (.*)$/.exec(message)?.[1]?.split(", ") ?? [];
    for (const key of [
      "port",
      "host",
      "apiKey",
      "redis",
      "jwt",
      "allowAnonymous",
      "namespaces",
      "limits",
      "logLevel",
    ]) {
      assert.ok(allowed.includes(key), `allowed keys should include ${key}: ${message}`);
    }
  });

  test("an allowedOrigins entry that is not an origin says how to write one", () => {
    const message = problem({ values: { allowedOrigins: ["app.example.com"] } });
    assert.match(
      message,
      /config key "allowedOrigins.0".*"app.example.com" is not an origin: write scheme:\/\/host\[:port\]/,
    );
    assert.equal(loadConfig({ values: { allowedOrigins: ["*", "https://*.example.com"] } }).allowedOrigins?.length, 2);
  });

  test("CRIER_API_KEYS is a comma-separated list of further keys", () => {
    const config = loadConfig({ env: { CRIER_API_KEY: "new-key-123", CRIER_API_KEYS: "old-key-123, older-key-1" } });
    assert.deepEqual(config.apiKeys, ["old-key-123", "older-key-1"]);
  });

  test("several unknown keys are reported together", () => {
    const message = problem({ values: { prot: 1, hots: 2 } });
    assert.match(message, /unknown config keys "prot", "hots" at the top level/);
  });

  test("an unknown nested key names its parent and lists that object's keys", async () => {
    const path = await file("nested.json", JSON.stringify({ limits: { maxFrameSize: 1 } }));
    const message = problem({ file: path });
    assert.match(message, /unknown config key "maxFrameSize" in "limits"/);
    assert.ok(message.includes(path), message);
    assert.match(message, /allowed keys: maxFrameBytes, commandsPerSecond, maxSubscriptions/);
  });

  test("an unknown key in a namespace lists the namespace options", () => {
    const message = problem({ values: { namespaces: { chat: { histroy: { size: 1 } } } } });
    assert.match(message, /unknown config key "histroy" in "namespaces.chat"/);
    assert.match(message, /allowed keys: subscribe, publish, history, presence, joinLeave, proxy$/);
  });

  test("a bad enum lists the allowed values and names its env var", () => {
    const message = problem({ env: { CRIER_LOG_LEVEL: "loud" } });
    assert.match(message, /config key "logLevel" from CRIER_LOG_LEVEL/);
    for (const level of ["fatal", "error", "warn", "info", "debug", "trace", "silent"]) {
      assert.ok(message.includes(`"${level}"`), `should list ${level}: ${message}`);
    }
    assert.match(message, /\(got "loud"\)/);
  });

  test("a bad nested enum in a file names the full key, the file and the allowed values", async () => {
    const path = await file("enum.yaml", "namespaces:\n  chat:\n    publish: everyone\n");
    const message = problem({ file: path });
    assert.match(message, /config key "namespaces.chat.publish"/);
    assert.ok(message.includes(`in ${path}`), message);
    assert.match(message, /"subscribers".*"token".*"none"/);
    assert.match(message, /\(got "everyone"\)/);
  });

  test("a value that is not a number names the flag and the value", () => {
    const message = problem({ flags: { port: "abc" } });
    assert.match(message, /config key "port" from --port/);
    assert.match(message, /expected number/);
    assert.match(message, /\(got "abc"\)/);
  });

  test("a number out of range says the bound", () => {
    const message = problem({ env: { CRIER_PORT: "70000" } });
    assert.match(message, /config key "port" from CRIER_PORT/);
    assert.match(message, /65535/);
    assert.match(message, /\(got 70000\)/);
  });

  test("a wrong type in a file names the key and the file", async () => {
    const path = await file("type.json", JSON.stringify({ limits: { maxFrameBytes: "big" } }));
    const message = problem({ file: path });
    assert.match(message, /config key "limits.maxFrameBytes"/);
    assert.ok(message.includes(`in ${path}`), message);
    assert.match(message, /expected number/);
  });

  test("a bad duration names the key and shows the accepted forms", async () => {
    const path = await file(
      "duration.json",
      JSON.stringify({ namespaces: { chat: { history: { size: 10, ttl: "10 minutes" } } } }),
    );
    const message = problem({ file: path });
    assert.match(message, /config key "namespaces.chat.history.ttl"/);
    assert.ok(message.includes(`in ${path}`), message);
    assert.match(message, /expected a positive duration such as/);
    assert.match(message, /"10m"/);
    assert.match(message, /\(got "10 minutes"\)/);
  });

  test("durations are converted to milliseconds", () => {
    const ttl = (value: unknown): number | undefined =>
      validateConfig({ namespaces: { chat: { history: { size: 1, ttl: value } } } }).namespaces.chat?.history?.ttlMs;
    assert.equal(ttl("500ms"), 500);
    assert.equal(ttl("10m"), 600_000);
    assert.equal(ttl(30), 30_000);
    assert.equal(ttl("2h"), 7_200_000);
  });

  test("a later source that fixes a value clears the error, and the origin follows the winning source", async () => {
    const path = await file("fixed.json", JSON.stringify({ port: "eighty" }));
    assert.equal(loadConfig({ file: path, env: { CRIER_PORT: "8081" } }).port, 8081);
    assert.match(problem({ file: path, flags: { port: "x" } }), /config key "port" from --port/);
  });

  test("every problem is listed, not just the first", () => {
    const all = problems({ env: { CRIER_PORT: "abc", CRIER_LOG_LEVEL: "loud" }, flags: { path: "no-slash" } });
    assert.equal(all.length, 3, all.join("\n"));
    assert.ok(all.some((p) => p.includes("CRIER_PORT")));
    assert.ok(all.some((p) => p.includes("CRIER_LOG_LEVEL")));
    assert.ok(all.some((p) => p.includes("--path") && p.includes("must start with /")));
  });

  test("settings given directly are validated with the same messages", () => {
    assert.throws(
      () => validateConfig({ port: -1 }),
      (error: unknown) =>
        error instanceof ConfigError && /config key "port"/.test(error.message) && /\(got -1\)/.test(error.message),
    );
  });
});
