// The `crier` command as a user runs it from a shell: real processes, their exit
// codes and what they print, the HTTP API they expose and how they shut down.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { SETTINGS } from "../../packages/server/src/config/load.js";
import {
  api,
  type CliProcess,
  type CrierInstance,
  REPO_ROOT,
  runCli,
  spawnCli,
  startCrier,
  TEST_API_KEY,
} from "../support/crier.js";
import { freePort } from "../support/redis.js";
import { TestClient } from "../support/ws-client.js";

// Every process a test starts is stopped after the file, even when the test failed midway.
const instances: CrierInstance[] = [];
const children: CliProcess[] = [];
const clients: TestClient[] = [];

async function crier(options: Parameters<typeof startCrier>[0] = {}): Promise<CrierInstance> {
  const instance = await startCrier(options);
  instances.push(instance);
  return instance;
}

function countOf(text: string, part: string): number {
  return text.split(part).length - 1;
}

let dir = "";

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "crier-cli-test-"));
});

after(async () => {
  for (const client of clients) client.ws.terminate();
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
  await Promise.all(instances.map((instance) => instance.kill("SIGKILL")));
  await rm(dir, { recursive: true, force: true });
});

describe("help and usage errors", () => {
  test("crier --help exits 0 and lists the commands and every serve flag", async () => {
    const result = await runCli(["--help"]);
    assert.equal(result.code, 0, result.stderr);
    for (const part of ["serve", "sub ROOM", "pub ROOM JSON", "--config", "--url", "--token"]) {
      assert.ok(result.stdout.includes(part), `--help should mention ${part}:\n${result.stdout}`);
    }
    for (const setting of SETTINGS) {
      assert.ok(result.stdout.includes(`--${setting.flag}`), `--help should list --${setting.flag}`);
    }
  });

  test("crier serve --help exits 0 and lists every flag with its environment variable", async () => {
    const result = await runCli(["serve", "--help"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /Usage: crier serve/);
    assert.match(result.stdout, /--config FILE/);
    for (const setting of SETTINGS) {
      assert.ok(result.stdout.includes(`--${setting.flag}`), `serve --help should list --${setting.flag}`);
      assert.ok(result.stdout.includes(setting.env), `serve --help should name ${setting.env}`);
    }
  });

  test("crier --version and crier version print the package's version", async () => {
    const manifest = JSON.parse(await readFile(join(REPO_ROOT, "packages/server/package.json"), "utf8"));
    assert.match(manifest.version, /^\d+\.\d+\.\d+/);
    for (const args of [["--version"], ["version"]]) {
      const result = await runCli(args);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${manifest.version}\n`);
    }
  });

  test("--log-format with another value exits 2 naming the key and the allowed values", async () => {
    const result = await runCli(["serve", "--log-format", "loud", "--api-key", TEST_API_KEY]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /config key "logFormat" from --log-format/);
    assert.match(result.stderr, /"json"\|"pretty" \(got "loud"\)/);
  });

  test("an unknown command exits 2 naming it", async () => {
    const result = await runCli(["serv"]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown command 'serv'/);
    assert.match(result.stderr, /Usage: crier/);
  });

  test("an unknown flag exits 2 naming the flag", async () => {
    const result = await runCli(["serve", "--bogus-flag"]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--bogus-flag/);
    assert.match(result.stderr, /crier serve --help/);
  });

  test("--port abc exits 2 naming the key, the flag and the value", async () => {
    const result = await runCli(["serve", "--port", "abc", "--api-key", TEST_API_KEY]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /config key "port"/);
    assert.match(result.stderr, /--port/);
    assert.match(result.stderr, /"abc"/);
    assert.match(result.stderr, /number/);
  });

  test("a config file with an unknown key exits 2 naming the key, the file and the allowed keys", async () => {
    const file = join(dir, "unknown-key.json");
    await writeFile(file, JSON.stringify({ port: 0, prot: 8080 }));
    const result = await runCli(["serve", "--config", file]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown config key "prot"/);
    assert.ok(result.stderr.includes(file), `the message should name ${file}:\n${result.stderr}`);
    assert.match(result.stderr, /allowed keys: .*\bport\b.*\bapiKey\b.*\bnamespaces\b/);
  });

  test("crier pub with invalid JSON exits 2 showing the value and how to quote", async () => {
    const result = await runCli(["pub", "room", "{x:1}", "--url", "ws://127.0.0.1:1/ws"]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /'\{x:1\}' is not JSON/);
    assert.match(result.stderr, /'\{"text":"hi"\}'/);
  });
});

describe("a running instance", () => {
  let server: CrierInstance;

  before(async () => {
    server = await crier();
  });

  test("/healthz and /readyz answer 200 without an API key once listening", async () => {
    const health = await api(server, "/healthz", undefined, { apiKey: null });
    assert.equal(health.status, 200);
    assert.deepEqual(health.body, { status: "ok" });
    const ready = await api(server, "/readyz", undefined, { apiKey: null });
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body, { status: "ready" });
  });

  test("the API answers the configured key and refuses others with 401", async () => {
    const info = await api(server, "/api/info");
    assert.equal(info.status, 200);
    assert.ok(
      server.nodeId !== undefined && JSON.stringify(info.body).includes(server.nodeId),
      "it describes this node",
    );
    const wrong = await api(server, "/api/info", undefined, { apiKey: "not-the-key-000" });
    assert.equal(wrong.status, 401);
    assert.equal((wrong.body as { error?: { code?: unknown } }).error?.code, "unauthorized");
    const none = await api(server, "/api/info", undefined, { apiKey: null });
    assert.equal(none.status, 401);
  });

  test("a second instance on the same port exits 1 saying the port is in use and how to choose another", async () => {
    const result = await runCli(["serve", "--port", String(server.port), "--api-key", TEST_API_KEY]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`port ${server.port} is already in use`));
    assert.match(result.stderr, /--port/);
    assert.match(result.stderr, /CRIER_PORT/);
  });

  test("crier sub prints what crier pub and POST /api/publish publish", async () => {
    const room = "cli-test:room-1";
    const sub = spawnCli(["sub", room, "--url", server.url]);
    children.push(sub);
    await sub.waitForLine(/crier sub: .*"op":"subscribed"/, { stream: "stderr" });

    const pub = await runCli(["pub", room, '{"x":1}', "--url", server.url]);
    assert.equal(pub.code, 0, pub.stderr);
    assert.equal((JSON.parse(pub.stdout.trim()) as { op?: unknown }).op, "ok");
    const first = JSON.parse(await sub.waitForLine(/"x":1/, { stream: "stdout" })) as Record<string, unknown>;
    assert.equal(first.op, "message");
    assert.equal(first.room, room);
    assert.deepEqual(first.data, { x: 1 });

    const published = await api(server, "/api/publish", { room, data: { y: 2 } });
    assert.equal(published.status, 200);
    const second = JSON.parse(await sub.waitForLine(/"y":2/, { stream: "stdout" })) as Record<string, unknown>;
    assert.equal(second.op, "message");
    assert.equal(second.room, room);
    assert.deepEqual(second.data, { y: 2 });
    assert.equal(sub.linesOf("stdout").length, 2, `one line per message:\n${sub.stdout()}`);

    const status = await sub.kill("SIGTERM");
    assert.deepEqual(status, { code: 0, signal: null });
    assert.match(sub.stderr(), /connection closed: 1000/);
  });
});

describe("log format", () => {
  test("JSON lines off a terminal; --log-format pretty (or CRIER_LOG_FORMAT) prints readable lines", async () => {
    const json = await crier();
    const first = json
      .output()
      .split("\n")
      .find((line) => line.startsWith("{"));
    assert.ok(first !== undefined && JSON.parse(first).msg !== undefined, json.output());
    await json.stop();

    for (const options of [{ args: ["--log-format", "pretty"] }, { env: { CRIER_LOG_FORMAT: "pretty" } }]) {
      const port = await freePort();
      const child = spawnCli(["serve", "--port", String(port), "--api-key", TEST_API_KEY, ...(options.args ?? [])], {
        env: options.env,
      });
      children.push(child);
      // As long as startCrier waits for "crier listening" (a loaded machine can take seconds).
      const line = await child.waitForLine(/crier listening/, { stream: "stdout", timeoutMs: 20_000 });
      assert.match(line, new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} INFO  crier listening .*port=${port}\\b`));
      assert.ok(!child.linesOf("stdout").some((text) => text.startsWith("{")), child.output());
      // A request answered: the CLI is past listen() and has its SIGTERM handler.
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
      child.process.kill("SIGTERM");
      assert.equal((await child.exited).code, 0, child.output());
    }
  });
});

describe("API key", () => {
  test("without --api-key a random key is printed once on stderr and works as Bearer", async () => {
    const server = await crier({ apiKey: null });
    assert.ok(server.apiKey.length >= 16, `a generated key, got '${server.apiKey}'`);
    assert.notEqual(server.apiKey, TEST_API_KEY);
    const output = server.output();
    assert.equal(countOf(output, "HTTP API key for this run"), 1, output);
    assert.equal(countOf(output, server.apiKey), 1, "the key appears only in that line, never in the logs");

    const info = await api(server, "/api/info");
    assert.equal(info.status, 200);
    const wrong = await api(server, "/api/info", undefined, { apiKey: `${server.apiKey}x` });
    assert.equal(wrong.status, 401);
  });

  test("CRIER_PORT and CRIER_API_KEY configure port and key", async () => {
    const port = await freePort();
    const key = "env-api-key-456";
    const server = await crier({ env: { CRIER_PORT: String(port), CRIER_API_KEY: key } });
    assert.equal(server.port, port);
    assert.ok(!server.output().includes("HTTP API key for this run"), "no key is generated when one is set");
    const info = await api(server, "/api/info", undefined, { apiKey: key });
    assert.equal(info.status, 200);
    const other = await api(server, "/api/info", undefined, { apiKey: TEST_API_KEY });
    assert.equal(other.status, 401);
  });
});

describe("shutdown", () => {
  test("SIGTERM closes connected clients with 4500 and exits 0", async () => {
    const server = await crier();
    const a = await TestClient.connect(server.url);
    const b = await TestClient.connect(server.url);
    clients.push(a, b);
    await a.call({ op: "subscribe", room: "shutdown" });

    const status = await server.stop();
    assert.deepEqual(status, { code: 0, signal: null }, server.output());
    assert.equal((await a.waitClosed()).code, 4500);
    assert.equal((await b.waitClosed()).code, 4500);
    assert.match(server.output(), /"msg":"crier stopped"/);
  });

  test("restart comes back on the same port after a crash", async () => {
    const server = await crier();
    const port = server.port;
    const killed = await server.kill();
    assert.equal(killed.signal, "SIGKILL");
    await server.restart();
    assert.equal(server.port, port);
    const ready = await api(server, "/readyz", undefined, { apiKey: null });
    assert.equal(ready.status, 200);
  });
});
