// Runs one scenario plan against one target on this machine: a fresh engine
// (one Redis, or a Redis Cluster for crier with --engine redis-cluster), the
// target's instances on 127.0.0.1, then the measurement (measure.ts)
// with every instance and Redis watched, and tears everything down.

import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { type Instance, startInstances, stopInstances } from "./cluster/instances.js";
import { type EngineName, type EngineServers, startEngine } from "./cluster/redis.js";
import type { TargetName } from "./generator/spec.js";
import { type MeasureOptions, measure, type TargetResult } from "./measure.js";
import type { Plan } from "./scenarios/scenario.js";
import { withTokens } from "./tokens.js";

export interface RunOptions extends Omit<MeasureOptions, "concurrency" | "timeoutMs"> {
  logDir: string;
  /** The backplane the servers share (the Socket.IO peer and the floor run on one Redis only). */
  engine: EngineName;
  socketioAdapter: "classic" | "sharded";
  /** Server processes per instance. */
  processes: number;
  cpuProfDir?: string;
}

export async function runTarget(target: TargetName, plan: Plan, options: RunOptions): Promise<TargetResult> {
  let engine: EngineServers | undefined;
  let instances: Instance[] = [];
  try {
    engine = await startEngine(target === "crier" ? options.engine : "redis", options.logDir);
    const secret = randomBytes(24).toString("base64url");
    instances = await startInstances({
      target,
      count: plan.instances,
      processes: options.processes,
      redisUrl: engine.url,
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
    const conns = target === "crier" && plan.needsTokens ? await withTokens(plan.conns, secret) : plan.conns;
    return await measure(
      {
        target,
        name: target,
        endpoints: instances.map((instance) => ({ host: "127.0.0.1", port: instance.port, tls: false })),
        servers: instances.map(({ name, pid }) => ({ name, pid })),
        enginePids: engine.pids,
      },
      plan,
      conns,
      { ...options, concurrency: 64, timeoutMs: 60_000 },
    );
  } finally {
    await stopInstances(instances);
    await engine?.stop();
  }
}

/** crier's configuration for the bench: limits out of the way of the load, JWT when users need tokens. */
function crierConfig(jwtSecret: string | undefined): Record<string, unknown> {
  return {
    limits: {
      maxConnectionsPerIp: 1_000_000,
      maxConnections: 1_000_000,
      connectionsPerSecond: 1_000_000,
      connectionsPerSecondPerIp: 1_000_000,
      commandsPerSecond: 1_000_000,
    },
    timeouts: { connect: 60 },
    clientSend: "all",
    ...(jwtSecret === undefined ? {} : { jwt: { secret: jwtSecret } }),
  };
}
