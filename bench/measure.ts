// Drives one deployment with one scenario plan: the generator's connections,
// then measurement windows (one at a fixed rate, or a rising series in ramp
// mode), and closes the connections. The deployment is whatever serves the
// endpoints: instances this run started (run.ts) or a user's own (external.ts);
// CPU and memory are measured for the processes it names, if any.
//
// A window: publish at the rate untagged (warm-up), switch the tag and sample
// every process's CPU, publish for the duration, stop and sample again, then
// wait until the window's publications are all delivered (or stop arriving).
// CPU and throughput come from the window; loss and latency from the tagged
// publications, however late they arrive.

import { setTimeout as sleep } from "node:timers/promises";
import { decodeFromCompressedBase64 } from "hdr-histogram-js";
import { costsBetween, type ProcessCost, sampleAll } from "./costs.js";
import type { CollectReply, EndReply, ProgressReply } from "./generator/messages.js";
import { GeneratorPool } from "./generator/pool.js";
import { newHistogram } from "./generator/recorder.js";
import type { ConnSpec, Endpoint, TargetName } from "./generator/spec.js";
import { openFileLimit, sampleTree } from "./proc.js";
import type { Plan } from "./scenarios/scenario.js";

export interface MeasureOptions {
  durationSeconds: number;
  warmupSeconds: number;
  workers: number;
  /** Connections set up at once per generator thread, and how long one may take. */
  concurrency: number;
  timeoutMs: number;
  /** Ramp mode: the next rate after a step, or undefined to stop. Absent: one step at the plan's rate. */
  nextRate?: (previous: StepResult) => number | undefined;
  log: (line: string) => void;
}

export interface Deployment {
  target: TargetName;
  /** Name in log lines. */
  name: string;
  /** Where connections go (ConnSpec.instance indexes this). */
  endpoints: Endpoint[];
  /** Server processes on this machine, one per endpoint, whose CPU and memory are measured; may be empty. */
  servers: { name: string; pid: number }[];
  /** The engine processes this run started (one Redis, or a cluster's nodes), if any. */
  enginePids?: number[];
  /** Publish through the HTTP API with this key instead of client publishes. */
  apiKey?: string;
}

export interface Latency {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export interface StepResult {
  rate: number;
  seconds: number;
  publishes: number;
  publishesPerSecond: number;
  /** Payloads received during the window, any tag. */
  deliveries: number;
  deliveriesPerSecond: number;
  /** Deliveries the window's publications must make, and those made by the end of the drain. */
  expected: number;
  delivered: number;
  deliveredRatio: number;
  /** Milliseconds. */
  latency: Latency;
  /** One per measured server process; empty when none is (an external deployment without --pid). */
  servers: ProcessCost[];
  serverCpuCores: number;
  /** Server CPU (all instances) per delivery, µs. */
  serverUsPerDelivery: number;
  /** The engine's processes together; absent when the bench did not start them. */
  redis?: ProcessCost;
  redisUsPerDelivery?: number;
  /** Each engine process (a cluster's nodes one by one). */
  engineNodes?: ProcessCost[];
  generatorCpuCores: number;
  /** CPU used by processes other than the servers, Redis and the generator (other work on the machine). */
  otherCpuCores: number;
  /** CPU the hypervisor took from this machine. */
  stealCores: number;
  skipped: number;
  /** Publications due that could not go out (connection gone, too many HTTP requests pending). */
  unsent: number;
}

export interface MemoryResult {
  name: string;
  connections: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  bytesPerConnection: number;
}

export interface TargetResult {
  target: TargetName;
  connections: { wanted: number; connected: number; failed: number; firstError?: string };
  setupSeconds: number;
  /** One per measured server process. */
  memory: MemoryResult[];
  /** Idle scenario: CPU over a quiet window. */
  idle?: {
    seconds: number;
    servers: ProcessCost[];
    redis?: ProcessCost;
    generatorCpuCores: number;
    otherCpuCores: number;
  };
  steps: StepResult[];
  errors: number;
  errorSamples: string[];
  closes: Record<string, number>;
}

const PROGRESS_MS = 100;
const DRAIN_STALL_MS = 2000;
const DRAIN_MAX_MS = 15_000;
/** Longest drain after a window, for the run's time bound. */
export const DRAIN_MAX_SECONDS = DRAIN_MAX_MS / 1000;
const TAGS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
/** Most steps in ramp mode: one tag each. */
export const MAX_STEPS = TAGS.length;

/** Connects `conns` to the deployment, measures, and closes every connection whatever happens. */
export async function measure(
  deployment: Deployment,
  plan: Plan,
  conns: ConnSpec[],
  options: MeasureOptions,
): Promise<TargetResult> {
  const { name, servers } = deployment;
  const rssBefore = servers.map((server) => sampleTree(server.pid)?.rssBytes ?? 0);
  const setupStart = performance.now();
  const started = await GeneratorPool.start({
    target: deployment.target,
    endpoints: deployment.endpoints,
    conns,
    publishers: plan.publishers,
    workers: options.workers,
    fdLimit: openFileLimit(),
    payloadBytes: plan.payloadBytes,
    concurrency: options.concurrency,
    timeoutMs: options.timeoutMs,
    ...(deployment.apiKey === undefined ? {} : { apiKey: deployment.apiKey }),
  });
  const pool = started.pool;
  try {
    const setupSeconds = (performance.now() - setupStart) / 1000;
    const { ready } = started;
    options.log(
      `${name}: ${ready.connected}/${conns.length} connections ready in ${setupSeconds.toFixed(1)} s` +
        (ready.failed > 0 ? ` (${ready.failed} failed: ${ready.firstError ?? ""})` : ""),
    );
    if (ready.connected === 0) throw new Error(`${name}: no connection could be set up: ${ready.firstError ?? ""}`);
    const result: TargetResult = {
      target: deployment.target,
      connections: {
        wanted: conns.length,
        connected: ready.connected,
        failed: ready.failed,
        ...(ready.firstError === undefined ? {} : { firstError: ready.firstError }),
      },
      setupSeconds,
      memory: [],
      steps: [],
      errors: 0,
      errorSamples: [],
      closes: {},
    };
    const perServer = countPerEndpoint(conns, deployment.endpoints.length);
    /** `rssAfter`: RSS per server now, or the median of samples taken over a window (less GC noise). */
    const measureMemory = (rssAfter?: number[]): void => {
      result.memory = servers.map((server, i) => {
        const after = rssAfter?.[i] ?? sampleTree(server.pid)?.rssBytes ?? 0;
        const before = rssBefore[i] ?? 0;
        const connections = perServer[i] ?? 0;
        return {
          name: server.name,
          connections,
          rssBeforeBytes: before,
          rssAfterBytes: after,
          bytesPerConnection: connections > 0 ? (after - before) / connections : 0,
        };
      });
    };

    if (plan.rate <= 0) {
      // Idle: connections only. CPU over a quiet window; memory sampled through it.
      const before = sampleAll(servers, deployment.enginePids, pool.pids());
      const rss: number[][] = servers.map(() => []);
      const end = performance.now() + options.durationSeconds * 1000;
      while (performance.now() < end) {
        await sleep(Math.min(1000, end - performance.now()));
        for (const [i, server] of servers.entries()) rss[i]?.push(sampleTree(server.pid)?.rssBytes ?? 0);
      }
      const after = sampleAll(servers, deployment.enginePids, pool.pids());
      const costs = costsBetween(before, after);
      result.idle = {
        seconds: costs.seconds,
        servers: costs.servers,
        ...(costs.redis === undefined ? {} : { redis: costs.redis }),
        generatorCpuCores: costs.generator.cores,
        otherCpuCores: costs.otherCores,
      };
      measureMemory(rss.map(median));
    } else {
      measureMemory();
      let rate: number | undefined = plan.rate;
      for (let step = 0; rate !== undefined && step < TAGS.length; step++) {
        const tag = TAGS[step] ?? "Z";
        options.log(
          `${name}: ${rate} publishes/s: ${options.warmupSeconds} s warm-up, ${options.durationSeconds} s measured`,
        );
        const outcome = await runStep(pool, deployment, rate, tag, options);
        result.steps.push(outcome);
        const cpu =
          outcome.servers.length > 0 ? `, ${outcome.serverUsPerDelivery.toFixed(2)} µs server CPU per delivery` : "";
        options.log(
          `${name}:   ${Math.round(outcome.deliveriesPerSecond)} deliveries/s, ` +
            `${(outcome.deliveredRatio * 100).toFixed(3)}% delivered, p99 ${outcome.latency.p99.toFixed(1)} ms${cpu}`,
        );
        rate = options.nextRate?.(outcome);
      }
    }
    const collected = await pool.all<CollectReply>(() => ({ type: "collect" }));
    for (const reply of collected) {
      result.errors += reply.errors;
      for (const message of reply.errorSamples) if (result.errorSamples.length < 5) result.errorSamples.push(message);
      for (const [code, count] of Object.entries(reply.closes))
        result.closes[code] = (result.closes[code] ?? 0) + count;
    }
    return result;
  } finally {
    await pool.close();
  }
}

async function runStep(
  pool: GeneratorPool,
  deployment: Deployment,
  rate: number,
  tag: string,
  options: MeasureOptions,
): Promise<StepResult> {
  await pool.all((share) => ({ type: "rate", rate: rate * share, tag: "w" }));
  await sleep(options.warmupSeconds * 1000);
  await pool.all(() => ({ type: "begin", tag }));
  const before = sampleAll(deployment.servers, deployment.enginePids, pool.pids());
  await sleep(options.durationSeconds * 1000);
  const ends = await pool.all<EndReply>(() => ({ type: "end" }));
  const after = sampleAll(deployment.servers, deployment.enginePids, pool.pids());
  const sent = sum(ends.map((e) => e.sent));
  const expected = sum(ends.map((e) => e.expected));
  const deliveries = sum(ends.map((e) => e.windowDeliveries));

  // Drain: wait for the window's publications until all arrived or they stop coming.
  const drainStart = performance.now();
  let delivered = 0;
  let lastChange = drainStart;
  for (;;) {
    const progress = await pool.all<ProgressReply>(() => ({ type: "progress" }));
    const now = sum(progress.map((p) => p.delivered));
    if (now !== delivered) lastChange = performance.now();
    delivered = now;
    if (delivered >= expected) break;
    if (performance.now() - lastChange > DRAIN_STALL_MS || performance.now() - drainStart > DRAIN_MAX_MS) break;
    await sleep(PROGRESS_MS);
  }
  const collected = await pool.all<CollectReply>(() => ({ type: "collect" }));
  delivered = sum(collected.map((c) => c.delivered));
  const latency = latencyOf(collected.map((reply) => reply.histogram));

  const costs = costsBetween(before, after);
  const serverCpuSeconds = sum(costs.servers.map((s) => s.cpuSeconds));
  const perDelivery = (cpuSeconds: number): number => (deliveries > 0 ? (cpuSeconds * 1e6) / deliveries : 0);
  return {
    rate,
    seconds: costs.seconds,
    publishes: sent,
    publishesPerSecond: sent / costs.seconds,
    deliveries,
    deliveriesPerSecond: deliveries / costs.seconds,
    expected,
    delivered,
    deliveredRatio: expected > 0 ? delivered / expected : 1,
    latency,
    servers: costs.servers,
    serverCpuCores: sum(costs.servers.map((s) => s.cpuCores)),
    serverUsPerDelivery: perDelivery(serverCpuSeconds),
    ...(costs.redis === undefined
      ? {}
      : {
          redis: costs.redis,
          redisUsPerDelivery: perDelivery(costs.redis.cpuSeconds),
          engineNodes: costs.engineNodes ?? [],
        }),
    generatorCpuCores: costs.generator.cores,
    otherCpuCores: costs.otherCores,
    stealCores: costs.stealCores,
    skipped: sum(ends.map((e) => e.skipped)),
    unsent: sum(ends.map((e) => e.unsent)),
  };
}

/** The latency of every worker's histogram (µs, encoded) merged, in ms; all 0 when nothing was recorded. */
export function latencyOf(histograms: readonly string[]): Latency {
  const histogram = newHistogram();
  for (const encoded of histograms) histogram.add(decodeFromCompressedBase64(encoded));
  if (histogram.totalCount === 0) return { p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0 };
  const ms = (percentile: number): number => histogram.getValueAtPercentile(percentile) / 1000;
  return {
    p50: ms(50),
    p90: ms(90),
    p99: ms(99),
    p999: ms(99.9),
    max: histogram.maxValue / 1000,
    mean: histogram.mean / 1000,
  };
}

function countPerEndpoint(conns: ConnSpec[], endpoints: number): number[] {
  const counts = new Array<number>(endpoints).fill(0);
  for (const conn of conns) counts[conn.instance] = (counts[conn.instance] ?? 0) + 1;
  return counts;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

function sum(values: number[]): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}
