// Builds the configuration from a file (JSON or YAML), CRIER_* environment
// variables and command-line flags, in that order of precedence (flags win),
// and validates it. Every error names the key, where it came from, the value
// and what is allowed.

import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { type CrierConfig, configSchema } from "./schema.js";

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

type Kind = "string" | "number" | "boolean" | "list";

/** One setting that can come from the environment or a flag. */
interface Setting {
  path: string[];
  env: string;
  flag: string;
  kind: Kind;
  help: string;
  /** A boolean flag that takes true/false (one that defaults to true: a bare flag could not turn it off). */
  flagTakesValue?: true;
}

export const SETTINGS: readonly Setting[] = [
  { path: ["port"], env: "CRIER_PORT", flag: "port", kind: "number", help: "port to listen on (default 8080)" },
  {
    path: ["host"],
    env: "CRIER_HOST",
    flag: "host",
    kind: "string",
    help: "address to bind (default: all interfaces, IPv4 and IPv6)",
  },
  { path: ["path"], env: "CRIER_PATH", flag: "path", kind: "string", help: "WebSocket endpoint path (default /ws)" },
  {
    path: ["apiKey"],
    env: "CRIER_API_KEY",
    flag: "api-key",
    kind: "string",
    help: "HTTP API key (default: a random key printed once at start)",
  },
  {
    path: ["apiKeys"],
    env: "CRIER_API_KEYS",
    flag: "api-keys",
    kind: "list",
    help: "comma-separated further HTTP API keys accepted besides --api-key (key rotation)",
  },
  {
    path: ["metricsPort"],
    env: "CRIER_METRICS_PORT",
    flag: "metrics-port",
    kind: "number",
    help: "serve GET /metrics on this port only (default: on --port)",
  },
  {
    path: ["metricsRequireKey"],
    env: "CRIER_METRICS_REQUIRE_KEY",
    flag: "metrics-require-key",
    kind: "boolean",
    help: "GET /metrics needs the API key (default: open)",
  },
  {
    path: ["redis"],
    env: "CRIER_REDIS_URL",
    flag: "redis",
    kind: "string",
    help: "Redis URL of the backplane: redis://, rediss:// or redis+sentinel:// (default: embedded in-memory broker)",
  },
  {
    path: ["redisPrefix"],
    env: "CRIER_REDIS_PREFIX",
    flag: "redis-prefix",
    kind: "string",
    help: 'prefix of Redis channels and keys (default "crier:")',
  },
  {
    path: ["nats"],
    env: "CRIER_NATS_URL",
    flag: "nats",
    kind: "string",
    help: "NATS URL of the backplane: nats://[USER:PASS@|TOKEN@]HOST:PORT[,HOST:PORT...] or tls://...; with JetStream it keeps history and presence too",
  },
  {
    path: ["natsCreds"],
    env: "CRIER_NATS_CREDS",
    flag: "nats-creds",
    kind: "string",
    help: "NATS .creds file (user JWT and NKey seed)",
  },
  {
    path: ["natsTls", "ca"],
    env: "CRIER_NATS_TLS_CA",
    flag: "nats-tls-ca",
    kind: "string",
    help: "PEM file of the CA that signed the NATS servers' certificates",
  },
  {
    path: ["natsTls", "cert"],
    env: "CRIER_NATS_TLS_CERT",
    flag: "nats-tls-cert",
    kind: "string",
    help: "PEM client certificate for NATS (with --nats-tls-key)",
  },
  {
    path: ["natsTls", "key"],
    env: "CRIER_NATS_TLS_KEY",
    flag: "nats-tls-key",
    kind: "string",
    help: "PEM client key for NATS (with --nats-tls-cert)",
  },
  {
    path: ["jwt", "secret"],
    env: "CRIER_JWT_SECRET",
    flag: "jwt-secret",
    kind: "string",
    help: "HS256 secret of connection tokens (default: none, anonymous connections allowed)",
  },
  {
    path: ["jwt", "publicKey"],
    env: "CRIER_JWT_PUBLIC_KEY",
    flag: "jwt-public-key",
    kind: "string",
    help: "PEM public key (SPKI) for RS256/ES256 connection tokens",
  },
  {
    path: ["jwt", "jwksUrl"],
    env: "CRIER_JWKS_URL",
    flag: "jwks-url",
    kind: "string",
    help: "JWKS URL for connection tokens",
  },
  { path: ["jwt", "issuer"], env: "CRIER_JWT_ISSUER", flag: "jwt-issuer", kind: "string", help: "required iss claim" },
  {
    path: ["jwt", "audience"],
    env: "CRIER_JWT_AUDIENCE",
    flag: "jwt-audience",
    kind: "string",
    help: "required aud claim",
  },
  {
    path: ["delivery", "compression", "enabled"],
    env: "CRIER_COMPRESSION",
    flag: "compression",
    kind: "boolean",
    help: "permessage-deflate for clients that offer it, each publication compressed once (default: off)",
  },
  {
    path: ["allowAnonymous"],
    env: "CRIER_ALLOW_ANONYMOUS",
    flag: "allow-anonymous",
    kind: "boolean",
    help: "accept connections without a token (default: only when no JWT key is set)",
  },
  {
    path: ["dashboard"],
    env: "CRIER_DASHBOARD",
    flag: "dashboard",
    kind: "boolean",
    flagTakesValue: true,
    help: "true or false: serve GET /dashboard, the operator's console, which calls /api/ with a key typed in the page (default true)",
  },
  {
    path: ["allowedOrigins"],
    env: "CRIER_ALLOWED_ORIGINS",
    flag: "allowed-origins",
    kind: "list",
    help: "comma-separated origins browsers may connect from, patterns like https://*.example.com, or * for any (default: the same host only)",
  },
  {
    path: ["trustProxy"],
    env: "CRIER_TRUST_PROXY",
    flag: "trust-proxy",
    kind: "number",
    help: "proxies in front whose X-Forwarded-For is believed for per-address limits (default 0: none)",
  },
  {
    path: ["nodeId"],
    env: "CRIER_NODE_ID",
    flag: "node-id",
    kind: "string",
    help: "this instance's id (default: random)",
  },
  {
    path: ["workers"],
    env: "CRIER_WORKERS",
    flag: "workers",
    kind: "number",
    help: "processes serving the port on this host (default 1; more need --redis)",
  },
  {
    path: ["logLevel"],
    env: "CRIER_LOG_LEVEL",
    flag: "log-level",
    kind: "string",
    help: "fatal, error, warn, info (default), debug, trace or silent",
  },
  {
    path: ["logFormat"],
    env: "CRIER_LOG_FORMAT",
    flag: "log-format",
    kind: "string",
    help: "json or pretty (default: pretty when stdout is a terminal, json otherwise)",
  },
];

function convert(raw: string, kind: Kind): unknown {
  switch (kind) {
    case "number":
      // A non-numeric string is kept so the schema reports it with the value.
      return raw.trim() !== "" && Number.isFinite(Number(raw)) ? Number(raw) : raw;
    case "boolean":
      if (/^(true|1|yes|on)$/i.test(raw)) return true;
      if (/^(false|0|no|off)$/i.test(raw)) return false;
      return raw;
    case "list":
      return raw
        .split(",")
        .map((item) => item.trim())
        .filter((item) => item !== "");
    default:
      return raw;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Sets a nested key. When an outer key already holds something that is not an
 * object (a mistake in the file), it is left alone so validation reports it,
 * rather than silently replaced.
 */
function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (isPlainObject(next)) {
      node = next;
    } else if (next === undefined) {
      const created: Record<string, unknown> = {};
      node[key] = created;
      node = created;
    } else {
      return;
    }
  }
  const last = path[path.length - 1];
  if (last !== undefined) node[last] = value;
}

/** Merges `source` into `target` key by key, objects recursively (as env vars and flags are merged). */
function mergeInto(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(source)) {
    const existing = target[key];
    if (isPlainObject(existing) && isPlainObject(value)) mergeInto(existing, value);
    else target[key] = value;
  }
}

/** Names of CRIER_* variables that are not settings: a likely typo (e.g. CRIER_REDIS for CRIER_REDIS_URL). */
export function unknownEnvironment(env: Record<string, string | undefined>): string[] {
  const known = new Set([
    ...SETTINGS.map((setting) => setting.env),
    "CRIER_CONFIG",
    "CRIER_URL",
    "CRIER_TOKEN",
    "CRIER_WORKER_INDEX",
  ]);
  return Object.keys(env).filter(
    (name) => name.startsWith("CRIER_") && !known.has(name) && !name.startsWith("CRIER_TEST"),
  );
}

function readFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new ConfigError([`cannot read config file ${file}: ${(error as Error).message}`]);
  }
  let parsed: unknown;
  try {
    const ext = extname(file).toLowerCase();
    parsed = ext === ".yaml" || ext === ".yml" ? parseYaml(text) : JSON.parse(text);
  } catch (error) {
    throw new ConfigError([`config file ${file} is not valid JSON or YAML: ${(error as Error).message}`]);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new ConfigError([`config file ${file} must hold an object of settings`]);
  }
  return parsed as Record<string, unknown>;
}

export interface ConfigSources {
  /** Path of a JSON or YAML file. */
  file?: string;
  /** Environment variables (CRIER_*); pass process.env. */
  env?: Record<string, string | undefined>;
  /** Flags by long name without dashes, e.g. { port: "8080", "api-key": "…" }. */
  flags?: Record<string, string | boolean | undefined>;
  /** Settings given directly (library use); lowest precedence after defaults. */
  values?: Record<string, unknown>;
}

/** Merges and validates; throws ConfigError listing every problem. */
export function loadConfig(sources: ConfigSources): CrierConfig {
  const merged: Record<string, unknown> = structuredClone(sources.values ?? {});
  const origin = new Map<string, string>();
  const file = sources.file ?? sources.env?.CRIER_CONFIG;
  if (file !== undefined && file !== "") {
    const fromFile = readFile(file);
    mergeInto(merged, fromFile);
    for (const key of Object.keys(fromFile)) origin.set(key, `in ${file}`);
  }
  for (const setting of SETTINGS) {
    const raw = sources.env?.[setting.env];
    if (raw !== undefined && raw !== "") {
      setPath(merged, setting.path, convert(raw, setting.kind));
      origin.set(setting.path.join("."), `from ${setting.env}`);
    }
  }
  for (const setting of SETTINGS) {
    const raw = sources.flags?.[setting.flag];
    if (raw === undefined) continue;
    const value = typeof raw === "boolean" ? raw : convert(raw, setting.kind);
    setPath(merged, setting.path, value);
    origin.set(setting.path.join("."), `from --${setting.flag}`);
  }
  return validateConfig(merged, origin);
}

/**
 * Configurations this module produced. Validating twice would be wrong, not
 * just wasteful: durations are seconds or strings on input and milliseconds
 * after, so a validated config read as input would stretch them 1000-fold.
 */
const validated = new WeakSet<object>();

/** Whether `config` is the result of validateConfig or loadConfig (so it must not be validated again). */
export function isValidatedConfig(config: unknown): config is CrierConfig {
  return typeof config === "object" && config !== null && validated.has(config);
}

/** Validates settings given as an object (library use, or after merging). */
export function validateConfig(input: unknown, origin: ReadonlyMap<string, string> = new Map()): CrierConfig {
  if (isValidatedConfig(input)) return input;
  const result = configSchema.safeParse(input);
  if (result.success) {
    validated.add(result.data);
    return result.data;
  }
  throw new ConfigError(result.error.issues.map((issue) => describe(issue, input, origin)));
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let node = input;
  for (const key of path) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

function describe(issue: z.core.$ZodIssue, input: unknown, origin: ReadonlyMap<string, string>): string {
  const path = issue.path.map(String);
  if (issue.code === "unrecognized_keys") {
    const source = origin.get(path[0] ?? issue.keys[0] ?? "");
    const where = `${path.length === 0 ? "at the top level" : `in "${path.join(".")}"`}${source ? ` ${source}` : ""}`;
    const allowed = allowedKeys(path);
    return `unknown config key${issue.keys.length > 1 ? "s" : ""} ${issue.keys
      .map((key) => `"${key}"`)
      .join(", ")} ${where}; allowed keys: ${allowed.join(", ")}`;
  }
  const key = path.join(".");
  const source = origin.get(key) ?? origin.get(path[0] ?? "");
  const value = valueAt(input, issue.path);
  // A URL's credentials (redis://:PASS@…, nats://USER:PASS@…) are not echoed.
  const masked = typeof value === "string" ? value.replace(/^([a-z+]+:\/\/)[^/@]*@/, "$1***@") : value;
  const shown = value === undefined ? "" : ` (got ${JSON.stringify(masked)})`;
  return `config key "${key}"${source ? ` ${source}` : ""}: ${issue.message}${shown}`;
}

type AnySchema = z.core.$ZodType;

function unwrap(schema: AnySchema): AnySchema {
  let current = schema;
  for (let i = 0; i < 10; i++) {
    const def = current._zod.def as { innerType?: AnySchema; in?: AnySchema };
    const inner = def.innerType ?? def.in;
    if (inner === undefined) return current;
    current = inner;
  }
  return current;
}

function allowedKeys(path: readonly string[]): string[] {
  let schema: AnySchema = configSchema;
  for (const key of path) {
    const def = unwrap(schema)._zod.def as { shape?: Record<string, AnySchema>; valueType?: AnySchema };
    const next = def.shape?.[key] ?? def.valueType;
    if (next === undefined) return [];
    schema = next;
  }
  const def = unwrap(schema)._zod.def as { shape?: Record<string, AnySchema> };
  return Object.keys(def.shape ?? {});
}
