// What each process spent over a measured window: CPU of every server
// instance, Redis and the generator from /proc, and how much else ran on the
// machine meanwhile (other work on a shared machine makes latencies noisy).
// Servers and Redis are those the bench can see: none for a remote deployment.

import {
  cpuBetween,
  type MachineSample,
  type ProcSample,
  sample,
  sampleMachine,
  sampleSum,
  sampleTree,
} from "./proc.js";

export interface ProcessCost {
  name: string;
  pid: number;
  cpuCores: number;
  cpuSeconds: number;
  /** Kernel part of cpuSeconds. */
  systemSeconds: number;
  rssBytes: number;
}

export interface WindowCosts {
  seconds: number;
  servers: ProcessCost[];
  /** The engine's processes together (one Redis, or every node of a Redis Cluster); absent when the bench started none. */
  redis?: ProcessCost;
  /** Each engine process (a cluster's nodes one by one). */
  engineNodes?: ProcessCost[];
  generator: { cores: number };
  /** CPU of every other process on the machine (user + system). */
  otherCores: number;
  /** CPU the hypervisor took from this machine. */
  stealCores: number;
}

export interface Samples {
  servers: { name: string; pid: number; sample: ProcSample | undefined }[];
  engine: { pid: number; sample: ProcSample | undefined }[];
  generator: ProcSample | undefined;
  machine: MachineSample | undefined;
}

/**
 * Samples the servers (each with its worker processes), the engine's
 * processes, the generator (this process and its `generatorPids`) and the
 * machine, now.
 */
export function sampleAll(
  servers: readonly { name: string; pid: number }[],
  enginePids: readonly number[] | undefined,
  generatorPids: readonly number[],
): Samples {
  return {
    servers: servers.map(({ name, pid }) => ({ name, pid, sample: sampleTree(pid) })),
    engine: (enginePids ?? []).map((pid) => ({ pid, sample: sample(pid) })),
    generator: sampleSum([sample(process.pid), ...generatorPids.map(sample)]),
    machine: sampleMachine(),
  };
}

export function costsBetween(before: Samples, after: Samples): WindowCosts {
  const cost = (name: string, pid: number, a: ProcSample | undefined, b: ProcSample | undefined): ProcessCost => {
    if (a === undefined || b === undefined) {
      return { name, pid, cpuCores: 0, cpuSeconds: 0, systemSeconds: 0, rssBytes: 0 };
    }
    const cpu = cpuBetween(a, b);
    return {
      name,
      pid,
      cpuCores: cpu.cores,
      cpuSeconds: cpu.seconds,
      systemSeconds: cpu.systemSeconds,
      rssBytes: b.rssBytes,
    };
  };
  const seconds = Math.max(0.001, ((after.generator?.at ?? 0) - (before.generator?.at ?? 0)) / 1000);
  const servers = before.servers.map((server, i) =>
    cost(server.name, server.pid, server.sample, after.servers[i]?.sample),
  );
  const engineNodes = before.engine.map((node, i) =>
    cost(`engine node ${i + 1}`, node.pid, node.sample, after.engine[i]?.sample),
  );
  const redis: ProcessCost | undefined =
    engineNodes.length === 0
      ? undefined
      : {
          name: "redis",
          pid: engineNodes[0]?.pid ?? 0,
          cpuCores: engineNodes.reduce((t, n) => t + n.cpuCores, 0),
          cpuSeconds: engineNodes.reduce((t, n) => t + n.cpuSeconds, 0),
          systemSeconds: engineNodes.reduce((t, n) => t + n.systemSeconds, 0),
          rssBytes: engineNodes.reduce((t, n) => t + n.rssBytes, 0),
        };
  const generator = {
    cores: before.generator && after.generator ? cpuBetween(before.generator, after.generator).cores : 0,
  };
  let otherCores = 0;
  let stealCores = 0;
  if (before.machine !== undefined && after.machine !== undefined) {
    const wall = Math.max(0.001, (after.machine.at - before.machine.at) / 1000);
    const ours = servers.reduce((t, s) => t + s.cpuCores, 0) + (redis?.cpuCores ?? 0) + generator.cores;
    otherCores = Math.max(0, (after.machine.busySeconds - before.machine.busySeconds) / wall - ours);
    stealCores = (after.machine.stealSeconds - before.machine.stealSeconds) / wall;
  }
  return {
    seconds,
    servers,
    ...(redis === undefined ? {} : { redis, engineNodes }),
    generator,
    otherCores,
    stealCores,
  };
}
