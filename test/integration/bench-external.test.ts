// `crier bench` pointed at a running crier (--url), as a user points it at a
// deployment: it starts nothing itself, counts every delivery, writes its
// JSON report, and on Ctrl-C closes every connection it opened. Small
// settings only; nothing here asserts how fast anything is.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { api, type CliProcess, type CrierInstance, runCli, spawnCli, startCrier } from "../support/crier.js";
import { waitUntil } from "../support/wait.js";

interface StepJson {
  publishes: number;
  deliveries: number;
  expected: number;
  delivered: number;
  servers: unknown[];
}

interface ReportJson {
  scenario: string;
  command: string;
  external?: { urls: string[]; publishVia: string; pids: number[] };
  results: {
    connections: { wanted: number; connected: number; failed: number };
    steps: StepJson[];
    errors: number;
    closes: Record<string, number>;
  }[];
}

let crier: CrierInstance;
let dir = "";
const children: CliProcess[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "crier-bench-test-"));
  crier = await startCrier();
});

after(async () => {
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
  await crier?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Connections the instance has open now, from its HTTP API. */
async function openConnections(): Promise<number> {
  const info = await api(crier, "/api/info");
  const nodes = (info.body as { nodes?: { connections?: number }[] }).nodes ?? [];
  return nodes.reduce((total, node) => total + (node.connections ?? 0), 0);
}

/** Connections the instance has seen closed with `code`, from /metrics. */
async function closedWith(code: number): Promise<number> {
  const metrics = await api(crier, "/metrics", undefined, { apiKey: null });
  const line = String(metrics.body)
    .split("\n")
    .find((text) => text.startsWith(`crier_disconnects_total{code="${code}"`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

const SMALL_CHAT = ["--subscribers", "20", "--rooms", "2", "--publishers", "2", "--rate", "20", "--workers", "1"];

describe("crier bench against a running crier (--url)", () => {
  test("chat counts every delivery and loses none", async () => {
    const file = join(dir, "chat.json");
    const result = await runCli(
      ["bench", "chat", "--url", crier.url, ...SMALL_CHAT, "--duration", "2", "--warmup", "1", "--json", file],
      { timeoutMs: 90_000 },
    );
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    assert.match(result.stderr, /nothing is started on this machine/);
    assert.match(result.stdout, /server CPU and memory: not measured for an external target/);

    const report = JSON.parse(await readFile(file, "utf8")) as ReportJson;
    assert.equal(report.scenario, "chat");
    assert.deepEqual(report.external?.urls, [crier.url]);
    assert.equal(report.external?.publishVia, "websocket");
    assert.equal(report.results.length, 1);
    const [run] = report.results;
    assert.ok(run !== undefined);
    assert.deepEqual(run.connections, { wanted: 20, connected: 20, failed: 0 });
    assert.equal(run.errors, 0);
    assert.deepEqual(run.closes, {});
    const [step] = run.steps;
    assert.ok(step !== undefined);
    assert.ok(step.publishes > 0, "publications were sent");
    assert.ok(step.deliveries > 0, "deliveries were counted");
    // Each publication goes to the 10 members of its room, the publisher included.
    assert.equal(step.expected, step.publishes * 10);
    assert.equal(step.delivered, step.expected, "nothing was lost");
    assert.deepEqual(step.servers, [], "no server CPU for an external target without --pid");

    // Every connection the bench opened (and its probe) was closed normally.
    await waitUntil("the bench's connections are gone", async () => (await openConnections()) === 0, 10_000);
  });

  test("Ctrl-C stops the run and closes every connection with a normal close", async () => {
    const closedBefore = await closedWith(1000);
    const bench = spawnCli(["bench", "chat", "--url", crier.url, ...SMALL_CHAT, "--duration", "60", "--warmup", "1"]);
    children.push(bench);
    await bench.waitForLine(/20\/20 connections ready/, { stream: "stderr", timeoutMs: 30_000 });
    assert.equal(await openConnections(), 20);
    bench.process.kill("SIGINT");
    const status = await bench.waitExit(20_000);
    assert.equal(status.code, 130, bench.tail());
    assert.match(bench.stderr(), /SIGINT: closing every connection/);
    await waitUntil("the bench's connections are gone", async () => (await openConnections()) === 0, 10_000);
    // 20 connections and the probe's, each with close code 1000 rather than a dropped socket.
    await waitUntil("21 normal closes", async () => (await closedWith(1000)) - closedBefore >= 21, 10_000);
  });

  test("with --api-key it publishes through the HTTP API, and the key never reaches the output", async () => {
    const file = join(dir, "chat-http.json");
    const args = ["bench", "chat", "--url", crier.url, ...SMALL_CHAT, "--duration", "1", "--warmup", "1"];
    const result = await runCli([...args, "--api-key", crier.apiKey, "--json", file], { timeoutMs: 90_000 });
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    const text = await readFile(file, "utf8");
    const report = JSON.parse(text) as ReportJson;
    assert.equal(report.external?.publishVia, "http-api");
    const step = report.results[0]?.steps[0];
    assert.ok(step !== undefined && step.publishes > 0);
    assert.equal(step.delivered, step.expected, "nothing was lost");
    assert.match(report.command, /--api-key \*\*\*/);
    for (const output of [text, result.stdout, result.stderr]) assert.ok(!output.includes(crier.apiKey));
  });

  test("scenarios and settings that cannot work from outside are refused before anything starts", async () => {
    const sparse = await runCli(["bench", "sparse", "--url", crier.url]);
    assert.equal(sparse.code, 2);
    assert.match(sparse.stderr, /sparse cannot run against --url/);

    const direct = await runCli(["bench", "direct", "--url", crier.url]);
    assert.equal(direct.code, 2);
    assert.match(direct.stderr, /direct needs one user per connection: pass --jwt-secret/);

    const big = await runCli(["bench", "idle", "--url", crier.url, "--connections", "50000"]);
    assert.equal(big.code, 2);
    assert.match(big.stderr, /more than the 10000 the bench opens against --url/);

    const path = await runCli(["bench", "chat", "--url", crier.url.replace(/\/ws$/, "/nope"), ...SMALL_CHAT]);
    assert.equal(path.code, 1);
    assert.match(path.stderr, /stopped before any load/);
  });

  test("crier bench --help lists the scenarios and the external-target options", async () => {
    const result = await runCli(["bench", "--help"]);
    assert.equal(result.code, 0, result.stderr);
    for (const part of ["Usage: crier bench", "chat", "ticker", "direct", "idle", "--url", "--api-key", "--pid"]) {
      assert.ok(result.stdout.includes(part), `bench --help should mention ${part}`);
    }
    const top = await runCli(["--help"]);
    assert.match(top.stdout, /bench SCENARIO/);
  });
});
