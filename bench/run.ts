// Runs one scenario plan against one target: a fresh Redis, the target's
// instances, the generator's connections, then measurement windows (one at a
// fixed rate, or a rising series in ramp mode), and tears everything down.
//
// A window: publish at the rate untagged (warm-up), switch the tag and sample
// every process's CPU, publish for the duration, stop and sample again, then
// wait until the window's publications are all delivered (or stop arriving).
// CPU and throughput come from the window; loss and latency from the tagged
// publications, however late they arrive.

import { createHmac, randomBytes } from "node:crypto";
import { decodeFromCompressedBase64 } from "hdr-histogram-js";
import { type Instance, startInstances, stopInstances } from "./cluster/instances.js";
import { type RedisServer, startRedis, stopRedis } from "./cluster/redis.js";
import { costsBetween, type ProcessCost, sampleAll } from "./costs.js";
import type { CollectReply, EndReply, ProgressReply } from "./generator/messages.js";
import { GeneratorPool } from "./generator/pool.js";
import { newHistogram } from "./generator/recorder.js";
import type { ConnSpec, TargetName } from "./generator/spec.js";
import { sample } from "./proc.js";
import type { Plan } from "./scenarios/scenario.js";

export interface RunOptions {
  durationSeconds: number;
  warmupSeconds: number;
  workers: number;
  logDir: string;
  socketioAdapter: "classic" | "sharded";
  cpuProfDir?: string;
  /** Ramp mode: the next rate after a step, or undefined to stop. Absent: one step at the plan's rate. */
  nextRate?: (previous: StepResult) => number | undefined;
  log: (line: string) => void;
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
  servers: ProcessCost[];
  serverCpuCores: number;
  /** Server CPU (all instances) per delivery, µs. */
  serverUsPerDelivery: number;
  redis: ProcessCost;
  redisUsPerDelivery: number;
  generatorCpuCores: number;
  /** CPU used by processes other than the servers, Redis and the generator (other work on the machine). */
  otherCpuCores: number;
  /** CPU the hypervisor took from this machine. */
  stealCores: number;
  skipped: number;
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
  memory: MemoryResult[];
  /** Idle scenario: CPU over a quiet window. */
  idle?: {
    seconds: number;
    servers: ProcessCost[];
    redis: ProcessCost;
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
const TAGS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

export async function runTarget(target: TargetName, plan: Plan, options: RunOptions): Promise<TargetResult> {
  let redis: RedisServer | undefined;
  let instances: Instance[] = [];
  let pool: GeneratorPool | undefined;
  try {
    redis = await startRedis(options.logDir);
    const secret = randomBytes(24).toString("base64url");
    instances = await startInstances({
      target,
      count: plan.instances,
      redisUrl: redis.url,
      logDir: options.logDir,
      crierConfig: crierConfig(plan.needsTokens ? secret : undefined),
      socketioAdapter: options.socketioAdapter,
      ...(options.cpuProfDir === undefined ? {} : { cpuProfDir: options.cpuProfDir }),
    });
    options.log(
      `${target}: ${instances.length} instance(s) up (${instances.map((i) => `${i.name}:${i.port}`).join(" ")})`,
    );
    // Let start-up work (JIT, first GCs) settle before the memory baseline.
    await sleep(1000);
    const rssBefore = instances.map((instance) => sample(instance.pid)?.rssBytes ?? 0);
    const conns = target === "crier" && plan.needsTokens ? withTokens(plan.conns, secret) : plan.conns;
    const setupStart = performance.now();
    const started = await GeneratorPool.start({
      target,
      host: "127.0.0.1",
      ports: instances.map((instance) => instance.port),
      conns,
      publishers: plan.publishers,
      workers: options.workers,
      payloadBytes: plan.payloadBytes,
      concurrency: 64,
      timeoutMs: 60_000,
    });
    pool = started.pool;
    const setupSeconds = (performance.now() - setupStart) / 1000;
    const { ready } = started;
    options.log(
      `${target}: ${ready.connected}/${plan.conns.length} connections ready in ${setupSeconds.toFixed(1)} s` +
        (ready.failed > 0 ? ` (${ready.failed} failed: ${ready.firstError ?? ""})` : ""),
    );
    if (ready.connected === 0) throw new Error(`${target}: no connection could be set up: ${ready.firstError ?? ""}`);
    const result: TargetResult = {
      target,
      connections: {
        wanted: plan.conns.length,
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
    const perInstance = countPerInstance(plan.conns, instances.length);
    /** `rssAfter`: RSS per instance now, or the median of samples taken over a window (less GC noise). */
    const measureMemory = (rssAfter?: number[]): void => {
      result.memory = instances.map((instance, i) => {
        const after = rssAfter?.[i] ?? sample(instance.pid)?.rssBytes ?? 0;
        const before = rssBefore[i] ?? 0;
        const connections = perInstance[i] ?? 0;
        return {
          name: instance.name,
          connections,
          rssBeforeBytes: before,
          rssAfterBytes: after,
          bytesPerConnection: connections > 0 ? (after - before) / connections : 0,
        };
      });
    };

    if (plan.rate <= 0) {
      // Idle: connections only. CPU over a quiet window; memory sampled through it.
      const before = sampleAll(instances, redis.pid);
      const rss: number[][] = instances.map(() => []);
      const end = performance.now() + options.durationSeconds * 1000;
      while (performance.now() < end) {
        await sleep(Math.min(1000, end - performance.now()));
        for (const [i, instance] of instances.entries()) rss[i]?.push(sample(instance.pid)?.rssBytes ?? 0);
      }
      const after = sampleAll(instances, redis.pid);
      const costs = costsBetween(before, after);
      result.idle = {
        seconds: costs.seconds,
        servers: costs.servers,
        redis: costs.redis,
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
          `${target}: ${rate} publishes/s: ${options.warmupSeconds} s warm-up, ${options.durationSeconds} s measured`,
        );
        const outcome = await runStep(pool, instances, redis, rate, tag, options);
        result.steps.push(outcome);
        options.log(
          `${target}:   ${Math.round(outcome.deliveriesPerSecond)} deliveries/s, ` +
            `${(outcome.deliveredRatio * 100).toFixed(3)}% delivered, p99 ${outcome.latency.p99.toFixed(1)} ms, ` +
            `${outcome.serverUsPerDelivery.toFixed(2)} µs server CPU per delivery`,
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
    await pool?.close();
    await stopInstances(instances);
    if (redis !== undefined) await stopRedis(redis);
  }
}

async function runStep(
  pool: GeneratorPool,
  instances: Instance[],
  redis: RedisServer,
  rate: number,
  tag: string,
  options: RunOptions,
): Promise<StepResult> {
  await pool.all((share) => ({ type: "rate", rate: rate * share, tag: "w" }));
  await sleep(options.warmupSeconds * 1000);
  await pool.all(() => ({ type: "begin", tag }));
  const before = sampleAll(instances, redis.pid);
  await sleep(options.durationSeconds * 1000);
  const ends = await pool.all<EndReply>(() => ({ type: "end" }));
  const after = sampleAll(instances, redis.pid);
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
  const histogram = newHistogram();
  for (const reply of collected) histogram.add(decodeFromCompressedBase64(reply.histogram));
  delivered = sum(collected.map((c) => c.delivered));
  const ms = (percentile: number): number => histogram.getValueAtPercentile(percentile) / 1000;
  const latency: Latency =
    histogram.totalCount === 0
      ? { p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0 }
      : {
          p50: ms(50),
          p90: ms(90),
          p99: ms(99),
          p999: ms(99.9),
          max: histogram.maxValue / 1000,
          mean: histogram.mean / 1000,
        };

  const costs = costsBetween(before, after);
  const serverCpuSeconds = sum(costs.servers.map((s) => s.cpuSeconds));
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
    serverUsPerDelivery: deliveries > 0 ? (serverCpuSeconds * 1e6) / deliveries : 0,
    redis: costs.redis,
    redisUsPerDelivery: deliveries > 0 ? (costs.redis.cpuSeconds * 1e6) / deliveries : 0,
    generatorCpuCores: costs.generator.cores,
    otherCpuCores: costs.otherCores,
    stealCores: costs.stealCores,
    skipped: sum(ends.map((e) => e.skipped)),
  };
}

/** crier's configuration for the bench: limits out of the way of the load, JWT when users need tokens. */
function crierConfig(jwtSecret: string | undefined): Record<string, unknown> {
  return {
    limits: { maxConnectionsPerIp: 1_000_000, commandsPerSecond: 1_000_000 },
    timeouts: { connect: 60 },
    clientSend: "all",
    ...(jwtSecret === undefined ? {} : { jwt: { secret: jwtSecret } }),
  };
}

/** HS256 tokens with `sub` for connections that have a user. */
function withTokens(conns: ConnSpec[], secret: string): ConnSpec[] {
  const encode = (value: object): string => Buffer.from(JSON.stringify(value)).toString("base64url");
  const header = encode({ alg: "HS256", typ: "JWT" });
  const exp = Math.floor(Date.now() / 1000) + 24 * 3600;
  return conns.map((conn) => {
    if (conn.user === undefined) return conn;
    const body = `${header}.${encode({ sub: conn.user, exp })}`;
    const signature = createHmac("sha256", secret).update(body).digest("base64url");
    return { ...conn, token: `${body}.${signature}` };
  });
}

function countPerInstance(conns: ConnSpec[], instances: number): number[] {
  const counts = new Array<number>(instances).fill(0);
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

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
