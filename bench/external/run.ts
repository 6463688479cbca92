// One run against an external deployment: say what it will do, leave that on
// a terminal for a few seconds, probe every URL, then measure with the
// deployment's servers watched only when --pid named them.

import type { ConnSpec } from "../generator/spec.js";
import { type MeasureOptions, measure, type TargetResult } from "../measure.js";
import type { Plan } from "../scenarios/scenario.js";
import { probe } from "./probe.js";
import { describeExternal, EXTERNAL_CONCURRENCY, EXTERNAL_TIMEOUT_MS, type ExternalTarget } from "./target.js";

/** Seconds the summary stays on screen before the run starts (a terminal only; --yes skips it). */
const COUNTDOWN_SECONDS = 5;

export interface ExternalRunOptions extends Omit<MeasureOptions, "concurrency" | "timeoutMs"> {
  scenario: string;
  /** Ramp mode's factor and highest rate, for the summary (nextRate schedules the steps). */
  ramp?: { factor: number; max: number };
  /** Leave the summary on screen a few seconds before starting. */
  countdown: boolean;
}

/** The deployment refused what the run would do: said in one line, no stack. */
export class ProbeError extends Error {}

export async function runExternal(
  target: ExternalTarget,
  plan: Plan,
  conns: ConnSpec[],
  options: ExternalRunOptions,
): Promise<TargetResult> {
  const { log } = options;
  for (const line of describeExternal(options.scenario, plan, target, options, options.ramp)) log(line);
  if (options.countdown) {
    log(`starting in ${COUNTDOWN_SECONDS} s (Ctrl-C cancels; --yes skips this pause)`);
    await new Promise((resolve) => setTimeout(resolve, COUNTDOWN_SECONDS * 1000));
  }
  log(`probing ${target.urls.length === 1 ? "the URL" : "each URL"} with one connection`);
  try {
    await probe(target, {
      rooms: plan.conns.some((conn) => conn.rooms.length > 0),
      publish: plan.publishers[0]?.kind,
    });
  } catch (error) {
    throw new ProbeError((error as Error).message);
  }
  return measure(
    {
      target: "crier",
      name: "deployment",
      endpoints: target.endpoints,
      servers: target.pids.map((pid) => ({ name: `pid ${pid}`, pid })),
      ...(target.apiKey === undefined ? {} : { apiKey: target.apiKey }),
    },
    plan,
    conns,
    {
      durationSeconds: options.durationSeconds,
      warmupSeconds: options.warmupSeconds,
      workers: options.workers,
      concurrency: EXTERNAL_CONCURRENCY,
      timeoutMs: EXTERNAL_TIMEOUT_MS,
      ...(options.nextRate === undefined ? {} : { nextRate: options.nextRate }),
      log,
    },
  );
}
