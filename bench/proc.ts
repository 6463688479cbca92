// Reads a process's CPU time and resident memory from /proc, so each server's
// cost is measured from outside and the same way for every target.

import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

let ticksPerSecond: number | undefined;

/** Clock ticks per second of /proc/PID/stat times (`getconf CLK_TCK`, almost always 100). */
export function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number.parseInt(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim(), 10) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

export interface ProcSample {
  /** User + system CPU seconds since the process started (all threads). */
  cpuSeconds: number;
  /** The system (kernel) part of cpuSeconds: syscalls, and on loopback the TCP stack of both ends. */
  systemSeconds: number;
  /** Resident set size in bytes. */
  rssBytes: number;
  /** When the sample was taken, ms (performance.now()). */
  at: number;
}

/** CPU and RSS of `pid` now; undefined when the process is gone. */
export function sample(pid: number): ProcSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm (field 2) may contain spaces and parentheses: fields after the last ")" are fixed.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    const userTicks = Number(fields[11]);
    const systemTicks = Number(fields[12]);
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
    const rssKb = match?.[1] === undefined ? 0 : Number(match[1]);
    return {
      cpuSeconds: (userTicks + systemTicks) / clockTicks(),
      systemSeconds: systemTicks / clockTicks(),
      rssBytes: rssKb * 1024,
      at: performance.now(),
    };
  } catch {
    return undefined;
  }
}

/**
 * A process and all its descendants summed (a server instance that runs
 * worker processes), CPU and RSS; undefined when the process is gone.
 */
export function sampleTree(pid: number): ProcSample | undefined {
  const root = sample(pid);
  if (root === undefined) return undefined;
  return sampleSum([root, ...descendants(pid).map(sample)]);
}

/** Several processes summed (generator processes); processes that are gone count as nothing. */
export function sampleSum(samples: (ProcSample | undefined)[]): ProcSample | undefined {
  const present = samples.filter((s): s is ProcSample => s !== undefined);
  if (present.length === 0) return undefined;
  return {
    cpuSeconds: present.reduce((t, s) => t + s.cpuSeconds, 0),
    systemSeconds: present.reduce((t, s) => t + s.systemSeconds, 0),
    rssBytes: present.reduce((t, s) => t + s.rssBytes, 0),
    at: performance.now(),
  };
}

/** Pids of every live descendant of `pid`, from each process's parent in /proc/PID/stat. */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    const child = Number(entry);
    if (!Number.isInteger(child)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${child}/stat`, "utf8");
    } catch {
      continue; // exited while we looked
    }
    // After the comm's closing ")": state, then the parent's pid.
    const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ", 2)[1]);
    const list = children.get(parent);
    if (list === undefined) children.set(parent, [child]);
    else list.push(child);
  }
  const found: number[] = [];
  const queue = [...(children.get(pid) ?? [])];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    found.push(next);
    queue.push(...(children.get(next) ?? []));
  }
  return found;
}

/** CPU used between two samples: in cores (CPU seconds per wall second), CPU seconds, and the kernel's part. */
export function cpuBetween(
  before: ProcSample,
  after: ProcSample,
): { cores: number; seconds: number; systemSeconds: number } {
  const seconds = Math.max(0, after.cpuSeconds - before.cpuSeconds);
  const systemSeconds = Math.max(0, after.systemSeconds - before.systemSeconds);
  const wall = (after.at - before.at) / 1000;
  return { cores: wall > 0 ? seconds / wall : 0, seconds, systemSeconds };
}

/** The soft limit on open files of this process (from /proc/self/limits). */
export function openFileLimit(): number {
  try {
    const limits = readFileSync("/proc/self/limits", "utf8");
    const match = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
    if (match?.[1] === undefined || match[1] === "unlimited") return Number.POSITIVE_INFINITY;
    return Number(match[1]);
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

export interface MachineSample {
  /** CPU seconds of user and system time of all processes since boot (interrupt time left out). */
  busySeconds: number;
  /** CPU seconds stolen by the hypervisor since boot. */
  stealSeconds: number;
  at: number;
}

/** Whole-machine CPU from /proc/stat, to tell how much else ran during a window. */
export function sampleMachine(): MachineSample | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
    // cpu user nice system idle iowait irq softirq steal guest guest_nice
    const [user, nice, system, , , , , steal] = line.trim().split(/\s+/).slice(1).map(Number);
    const ticks = clockTicks();
    return {
      busySeconds: ((user ?? 0) + (nice ?? 0) + (system ?? 0)) / ticks,
      stealSeconds: (steal ?? 0) / ticks,
      at: performance.now(),
    };
  } catch {
    return undefined;
  }
}
