// An external target: a crier deployment the bench does not start (`--url`),
// typically a user's own. Nothing is started on this machine; connections
// are spread over the URLs; rooms and users are named for this run, so the
// bench never publishes into a room or to a user it did not create; counts,
// rates and durations are bounded; and before anything starts the user is
// told exactly what will be done.

import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import type { ConnSpec, Endpoint } from "../generator/spec.js";
import type { MeasureOptions } from "../measure.js";
import { DRAIN_MAX_SECONDS, MAX_STEPS } from "../measure.js";
import type { Plan } from "../scenarios/scenario.js";
import { withTokens } from "../tokens.js";
import { UsageError } from "../usage.js";

/** Scenarios that make sense from outside (sparse is about what instances spend: run it locally). */
export const EXTERNAL_SCENARIOS = ["chat", "ticker", "direct", "idle"] as const;

/** Hard bounds on what the bench does to a deployment it does not own. */
export const EXTERNAL_LIMITS = {
  connections: 10_000,
  publishesPerSecond: 10_000,
  deliveriesPerSecond: 200_000,
  durationSeconds: 120,
  warmupSeconds: 30,
} as const;

/** Connection set-up against a deployment: gentler than against our own instances. */
export const EXTERNAL_CONCURRENCY = 16;
export const EXTERNAL_TIMEOUT_MS = 30_000;

/** crier's defaults a deployment may still have (docs/configuration.md): past them, expect refusals. */
const DEFAULT_MAX_CONNECTIONS_PER_IP = 1000;
const DEFAULT_COMMANDS_PER_SECOND = 100;
const DEFAULT_CONNECTIONS_PER_SECOND_PER_IP = 100;

const ROOM_CHARS = /^[A-Za-z0-9_\-:.@/=]*$/;

export type Auth = { kind: "anonymous" } | { kind: "token"; token: string } | { kind: "jwt-secret"; secret: string };

export interface ExternalTarget {
  /** The URLs as given (credentials are refused, so they are safe to print and record). */
  urls: string[];
  endpoints: Endpoint[];
  auth: Auth;
  /** Publish through the HTTP API with this key instead of client publishes. */
  apiKey?: string;
  /** Server processes on this machine, one per URL, to read CPU and memory from /proc. */
  pids: number[];
  /** This run's id, in every room and user name. */
  runId: string;
  roomPrefix: string;
  userPrefix: string;
}

export interface ExternalFlags {
  url: string;
  "api-key"?: string | undefined;
  token?: string | undefined;
  "jwt-secret"?: string | undefined;
  pid?: string | undefined;
  "room-prefix"?: string | undefined;
}

/** Reads the external-target flags; throws UsageError on anything wrong. */
export function parseExternal(flags: ExternalFlags, scenario: string): ExternalTarget {
  if (!(EXTERNAL_SCENARIOS as readonly string[]).includes(scenario)) {
    throw new UsageError(
      `${scenario} cannot run against --url (it measures what the instances spend on rooms they have no member in: ` +
        `run it locally); with --url: ${EXTERNAL_SCENARIOS.join(", ")}`,
    );
  }
  const parsed = flags.url
    .split(",")
    .map((text) => text.trim())
    .filter((text) => text !== "")
    .map(parseUrl);
  if (parsed.length === 0) throw new UsageError("--url needs at least one ws:// or wss:// URL");
  if (parsed.length > 64) throw new UsageError("--url takes at most 64 URLs");
  const token = flags.token;
  const secret = flags["jwt-secret"];
  if (token !== undefined && secret !== undefined) throw new UsageError("give --token or --jwt-secret, not both");
  if (scenario === "direct" && secret === undefined) {
    throw new UsageError(
      "direct needs one user per connection: pass --jwt-secret SECRET (the deployment's HS256 secret) " +
        "so the bench can sign a token for each of its users",
    );
  }
  const auth: Auth =
    secret !== undefined
      ? { kind: "jwt-secret", secret }
      : token !== undefined
        ? { kind: "token", token }
        : { kind: "anonymous" };
  const pids = parsePids(flags.pid, parsed.length);
  const runId = randomBytes(4).readUInt32BE(0).toString(36).padStart(6, "0").slice(-6);
  const roomPrefix = flags["room-prefix"] ?? `bench:${runId}:`;
  if (!ROOM_CHARS.test(roomPrefix) || roomPrefix.length > 150) {
    throw new UsageError(`--room-prefix must be at most 150 characters of A-Z a-z 0-9 _ - : . @ / =`);
  }
  return {
    urls: parsed.map((p) => p.text),
    endpoints: parsed.map((p) => p.endpoint),
    auth,
    ...(flags["api-key"] === undefined ? {} : { apiKey: flags["api-key"] }),
    pids,
    runId,
    roomPrefix,
    userPrefix: `bench-${runId}-`,
  };
}

function parseUrl(text: string): { text: string; endpoint: Endpoint } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--url: '${text}' is not a URL (e.g. ws://host:8080/ws)`);
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new UsageError(`--url: '${text}' must start with ws:// or wss://`);
  }
  if (url.username !== "" || url.password !== "") {
    throw new UsageError(`--url: '${text}' carries credentials; pass a token with --token instead`);
  }
  const tls = url.protocol === "wss:";
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  return {
    text: `${url.protocol}//${url.host}${url.pathname}${url.search}`,
    endpoint: {
      host,
      port: url.port === "" ? (tls ? 443 : 80) : Number(url.port),
      tls,
      path: `${url.pathname}${url.search}`,
      api: `${tls ? "https" : "http"}://${url.host}`,
    },
  };
}

function parsePids(text: string | undefined, urls: number): number[] {
  if (text === undefined) return [];
  const pids = text.split(",").map((part) => Number(part.trim()));
  for (const pid of pids) {
    if (!Number.isInteger(pid) || pid < 1) throw new UsageError(`--pid takes process ids, not ${text}`);
    if (!existsSync(`/proc/${pid}/stat`)) throw new UsageError(`--pid ${pid}: no such process on this machine`);
  }
  if (pids.length !== urls) {
    throw new UsageError(
      `--pid takes one process id per URL, in the same order (${urls} URL(s), ${pids.length} pid(s))`,
    );
  }
  return pids;
}

/**
 * The plan with this run's names (rooms `PREFIX room-N`, users `bench-RUN-uN`)
 * and its connections with their credentials.
 */
export async function externalPlan(plan: Plan, target: ExternalTarget): Promise<{ plan: Plan; conns: ConnSpec[] }> {
  const room = (name: string): string => `${target.roomPrefix}${name}`;
  const user = (name: string): string => `${target.userPrefix}${name}`;
  const renamed: Plan = {
    ...plan,
    conns: plan.conns.map((conn) => ({
      ...conn,
      rooms: conn.rooms.map(room),
      ...(conn.user === undefined ? {} : { user: user(conn.user) }),
    })),
    publishers: plan.publishers.map((publisher) => ({
      ...publisher,
      targets: publisher.targets.map(publisher.kind === "room" ? room : user),
    })),
  };
  const auth = target.auth;
  let conns = renamed.conns;
  if (auth.kind === "token") conns = conns.map((conn) => ({ ...conn, token: auth.token }));
  if (auth.kind === "jwt-secret") {
    // Connections without a user share one, so that namespaces or sends that need a user accept them.
    conns = await withTokens(conns, auth.secret, {
      anonymousAs: user("anon"),
      extra: { rooms: [`${target.roomPrefix}*`], publish: [`${target.roomPrefix}*`] },
    });
  }
  return { plan: renamed, conns };
}

/** Deliveries per second the plan asks for at `rate` (publishers take turns, each with its fan-out). */
export function deliveriesPerSecond(plan: Plan, rate: number): number {
  if (plan.publishers.length === 0) return 0;
  const fanout = plan.publishers.reduce((total, p) => total + p.fanout, 0) / plan.publishers.length;
  return rate * fanout;
}

/** The highest rate the bounds allow for this plan. */
export function maxRate(plan: Plan): number {
  const perPublication = deliveriesPerSecond(plan, 1);
  const byDeliveries = perPublication > 0 ? EXTERNAL_LIMITS.deliveriesPerSecond / perPublication : Infinity;
  return Math.floor(Math.min(EXTERNAL_LIMITS.publishesPerSecond, byDeliveries));
}

/** Throws UsageError when the run would go past the bounds. */
export function checkBounds(plan: Plan, options: { durationSeconds: number; warmupSeconds: number }): void {
  const limits = EXTERNAL_LIMITS;
  if (plan.conns.length > limits.connections) {
    throw new UsageError(
      `${plan.conns.length} connections is more than the ${limits.connections} the bench opens against --url`,
    );
  }
  if (plan.rate > maxRate(plan)) {
    throw new UsageError(
      `${plan.rate} publishes/s (about ${Math.round(deliveriesPerSecond(plan, plan.rate))} deliveries/s) is past ` +
        `the bounds against --url (${limits.publishesPerSecond} publishes/s, ${limits.deliveriesPerSecond} ` +
        `deliveries/s): at most ${maxRate(plan)} publishes/s for this shape`,
    );
  }
  if (options.durationSeconds > limits.durationSeconds || options.durationSeconds <= 0) {
    throw new UsageError(`--duration against --url must be above 0 and at most ${limits.durationSeconds} s`);
  }
  if (options.warmupSeconds > limits.warmupSeconds) {
    throw new UsageError(`--warmup against --url must be at most ${limits.warmupSeconds} s`);
  }
}

/** What the run will do, in lines for the user to read before it starts. */
export function describeExternal(
  scenario: string,
  plan: Plan,
  target: ExternalTarget,
  options: Pick<MeasureOptions, "durationSeconds" | "warmupSeconds" | "workers">,
  ramp: { factor: number; max: number } | undefined,
): string[] {
  const perUrl = new Array<number>(target.urls.length).fill(0);
  for (const conn of plan.conns) perUrl[conn.instance] = (perUrl[conn.instance] ?? 0) + 1;
  const width = Math.max(...target.urls.map((url) => url.length));
  const lines = [
    `${scenario} against ${target.urls.length === 1 ? "1 URL" : `${target.urls.length} URLs`} ` +
      "(nothing is started on this machine):",
    ...target.urls.map((url, i) => `  ${url.padEnd(width)}  ${perUrl[i] ?? 0} connections`),
    `  shape: ${plan.summary}`,
  ];
  const rooms = new Set(plan.conns.flatMap((conn) => conn.rooms));
  const users = plan.conns.filter((conn) => conn.user !== undefined).length;
  const names: string[] = [];
  if (rooms.size > 0) names.push(`${rooms.size} room(s) named ${target.roomPrefix}…`);
  if (users > 0) names.push(`${users} users named ${target.userPrefix}…`);
  if (names.length > 0) lines.push(`  names: ${names.join(", ")} (this run's own)`);
  if (plan.rate > 0) {
    const kind = plan.publishers[0]?.kind === "user" ? "sends" : "publications";
    const via =
      target.apiKey === undefined
        ? "as client commands on the publishers' connections"
        : `through the HTTP API (POST ${plan.publishers[0]?.kind === "user" ? "/api/send" : "/api/publish"} ` +
          "on each publisher's URL, with --api-key)";
    const rate = ramp === undefined ? `${plan.rate} ${kind}/s` : `starting at ${plan.rate} ${kind}/s`;
    lines.push(
      `  load: ${rate} from ${plan.publishers.length} publisher(s) ${via}, ${plan.payloadBytes}-byte payloads: ` +
        `about ${Math.round(deliveriesPerSecond(plan, plan.rate))} deliveries/s`,
    );
    if (ramp !== undefined) {
      lines.push(
        `  ramp: ×${ramp.factor} per step while delivery and p99 pass, up to ${ramp.max} ${kind}/s ` +
          `(about ${Math.round(deliveriesPerSecond(plan, ramp.max))} deliveries/s)`,
      );
    }
  } else {
    lines.push("  load: none; the connections stay open and answer pings");
  }
  const steps = ramp === undefined ? 1 : rampSteps(plan.rate, ramp.factor, ramp.max);
  const stepSeconds = options.warmupSeconds + options.durationSeconds + (plan.rate > 0 ? DRAIN_MAX_SECONDS : 0);
  const setupSeconds = EXTERNAL_TIMEOUT_MS / 1000;
  const stepText =
    plan.rate > 0
      ? `${options.warmupSeconds} s warm-up + ${options.durationSeconds} s measured + up to ${DRAIN_MAX_SECONDS} s drain`
      : `${options.durationSeconds} s`;
  lines.push(
    `  time: ${stepText}${steps > 1 ? `, per step, at most ${steps} steps` : ""}; ` +
      `at most about ${Math.ceil(setupSeconds + steps * stepSeconds)} s in all`,
  );
  const auth =
    target.auth.kind === "anonymous"
      ? "anonymous connections (no token)"
      : target.auth.kind === "token"
        ? "every connection uses the token from --token"
        : `HS256 tokens signed with --jwt-secret: sub ${target.userPrefix}…, rooms and publish ${target.roomPrefix}*`;
  lines.push(`  auth: ${auth}`);
  lines.push(
    target.pids.length === 0
      ? "  server CPU and memory: not measured (an external target; --pid PID,... reads them from /proc " +
          "for servers on this machine)"
      : `  server CPU and memory: read from /proc for pid(s) ${target.pids.join(", ")}`,
  );
  lines.push(...warnings(plan, target), "  Ctrl-C stops the run and closes every connection.");
  return lines;
}

/** crier's default limits that this run would cross, if the deployment still has them. */
function warnings(plan: Plan, target: ExternalTarget): string[] {
  const notes: string[] = [];
  const perHost = new Map<string, number>();
  for (const conn of plan.conns) {
    const host = target.endpoints[conn.instance]?.host ?? "";
    perHost.set(host, (perHost.get(host) ?? 0) + 1);
  }
  const most = Math.max(0, ...perHost.values());
  if (most > DEFAULT_MAX_CONNECTIONS_PER_IP) {
    notes.push(
      `  note: ${most} connections to one host from this machine; crier's default limits.maxConnectionsPerIp ` +
        `is ${DEFAULT_MAX_CONNECTIONS_PER_IP} (more get HTTP 429 unless the deployment raised it)`,
    );
  }
  if (most > DEFAULT_CONNECTIONS_PER_SECOND_PER_IP) {
    notes.push(
      `  note: connections are set up faster than crier's default limits.connectionsPerSecondPerIp ` +
        `(${DEFAULT_CONNECTIONS_PER_SECOND_PER_IP}); unless the deployment raised it, some connections get HTTP 429`,
    );
  }
  const perPublisher = plan.publishers.length > 0 ? plan.rate / plan.publishers.length : 0;
  if (target.apiKey === undefined && perPublisher > DEFAULT_COMMANDS_PER_SECOND) {
    notes.push(
      `  note: ${Math.round(perPublisher)} publishes/s per publisher connection; crier's default ` +
        `limits.commandsPerSecond is ${DEFAULT_COMMANDS_PER_SECOND} (more get rate_limited): add --publishers`,
    );
  }
  return notes;
}

/**
 * Most steps a ramp can take (cli.ts's schedule): up by `factor` to `max`, or,
 * when the first step fails, down until one passes and then up again.
 */
function rampSteps(start: number, factor: number, max: number): number {
  let up = 0;
  for (let rate = start; Math.round(rate * factor) <= max; rate = Math.round(rate * factor)) {
    // A factor too small to move the rounded rate repeats the same step until the steps run out.
    if (Math.round(rate * factor) <= rate) return MAX_STEPS;
    up++;
  }
  let down = 0;
  for (let rate = start; Math.floor(rate / factor) >= 1; rate = Math.floor(rate / factor)) down++;
  return Math.min(MAX_STEPS, 1 + up + 2 * down);
}
