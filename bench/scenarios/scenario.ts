// A scenario turns its options into a plan: how many instances, which
// connections (instance, rooms, user), which of them publish where, and at
// what rate. The orchestrator runs the same plan against every target.

import type { ConnSpec, PublisherSpec } from "../generator/spec.js";

export interface Plan {
  /** One line describing the shape, for the report. */
  summary: string;
  instances: number;
  conns: ConnSpec[];
  publishers: PublisherSpec[];
  /** Publications per second, all publishers together; 0 when nobody publishes. */
  rate: number;
  payloadBytes: number;
  /** Connections with a user need a token on crier: the servers get this HS256 secret. */
  needsTokens: boolean;
}

export interface Scenario {
  name: string;
  /** What it measures, for --help. */
  about: string;
  /** Numeric options it takes, with their defaults. */
  defaults: Record<string, number>;
  build(options: Record<string, number>): Plan;
}

/** An option from `options`, which the CLI fills from the scenario's defaults. */
export function option(options: Record<string, number>, name: string): number {
  const value = options[name];
  if (value === undefined) throw new Error(`missing option --${name}`);
  return value;
}

/**
 * Where the plan's connections go, for its summary: "2 instances" started by
 * the bench, or "2 URLs" of an external deployment (the CLI sets `urls`).
 */
export function placement(options: Record<string, number>): string {
  const urls = options.urls;
  if (urls !== undefined) return urls === 1 ? "1 URL" : `${urls} URLs`;
  const instances = option(options, "instances");
  return instances === 1 ? "1 instance" : `${instances} instances`;
}

/**
 * Ephemeral ports of one source address run out near 28k: past 25,000
 * connections they are spread over 127.0.0.x, 10,000 to an address. Binding
 * a source address makes the kernel search for a free port at bind time, a
 * search that slows down sharply as an address's ports fill up.
 */
export function sourceAddress(index: number, total: number): string | undefined {
  const unbound = 25_000;
  const perAddress = 10_000;
  return total <= unbound ? undefined : `127.0.0.${1 + Math.floor(index / perAddress)}`;
}
