// The configuration schema (ARCHITECTURE.md "Configuration"): every key, its
// default and what is allowed. Validated once at start; inner modules receive
// the parsed values and never read config or env themselves.

import { z } from "zod";
import { natsUrlProblem } from "../nats/url.js";
import { isClusterUrl, redisUrlProblem, SENTINEL_SCHEME } from "../redis/url.js";
import { originEntryProblem } from "../transport/origin.js";
import { parseDuration } from "./duration.js";

const duration = z.union([z.number().positive(), z.string()]).transform((value, ctx) => {
  const ms = typeof value === "number" ? value * 1000 : parseDuration(value);
  if (ms === undefined || ms <= 0) {
    ctx.addIssue({
      code: "custom",
      message: `expected a positive duration such as 30, "500ms", "10s", "10m", "1h" or "7d"`,
    });
    return z.NEVER;
  }
  return ms;
});

/** A number of seconds in the file, up to a day. */
const seconds = (fallback: number) =>
  z
    .number()
    .positive()
    .max(24 * 3600)
    .default(fallback);

// After parsing, every duration is in milliseconds and its name says so
// (`…Ms`): the file's keys stay as documented, in seconds or duration strings.

export const namespaceSchema = z
  .object({
    subscribe: z.enum(["public", "token"]).default("public"),
    publish: z.enum(["subscribers", "token", "none"]).default("subscribers"),
    history: z
      .object({
        size: z.number().int().positive().max(1_000_000),
        ttl: duration,
      })
      .strict()
      .transform(({ size, ttl }) => ({ size, ttlMs: ttl }))
      .optional(),
    presence: z.boolean().default(false),
    joinLeave: z.boolean().default(false),
    /** This namespace's subscribe and publish proxies, instead of the top-level ones. */
    proxy: z
      .object({
        subscribe: z.url({ protocol: /^https?$/ }).optional(),
        publish: z.url({ protocol: /^https?$/ }).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

const proxyUrl = z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }).optional();

/** The backend proxy (docs/backend.md): the application's own backend decides, over HTTP. */
export const proxySchema = z
  .object({
    connect: proxyUrl,
    refresh: proxyUrl,
    subscribe: proxyUrl,
    publish: proxyUrl,
    rpc: proxyUrl,
    /** How long one call may take, waiting for a free slot included. */
    timeout: duration.default(1000),
    /** Headers of the client's upgrade (or SSE) request sent along with every call, e.g. Cookie. */
    headers: z
      .array(z.string().regex(/^[A-Za-z0-9-]+$/, "must be an HTTP header name"))
      .max(32)
      .default([]),
    /** Calls in flight at once per instance; more wait for a slot (within `timeout`). */
    maxConcurrency: z.number().int().min(1).max(10_000).default(64),
    /**
     * A connect with a token that a configured JWT key verifies skips the
     * connect proxy; true sends every connect to the proxy (the token in its body).
     */
    connectWithToken: z.boolean().default(false),
  })
  .strict()
  .transform(({ timeout, ...rest }) => ({ ...rest, timeoutMs: timeout }));

export const limitsSchema = z
  .object({
    maxFrameBytes: z
      .number()
      .int()
      .min(256)
      .max(64 * 1024 * 1024)
      .default(65_536),
    commandsPerSecond: z.number().positive().max(1_000_000).default(100),
    maxSubscriptions: z.number().int().positive().max(1_000_000).default(256),
    maxConnectionsPerIp: z.number().int().positive().default(1000),
    /** Open connections on this instance (each process of --workers counts apart). */
    maxConnections: z.number().int().positive().default(100_000),
    /** New connections per second on this instance. */
    connectionsPerSecond: z.number().int().positive().default(2000),
    /** New connections per second from one address. */
    connectionsPerSecondPerIp: z.number().int().positive().default(100),
    /** Connections of one user (JWT `sub`) across the cluster; anonymous connections are not counted. */
    maxConnectionsPerUser: z.number().int().positive().default(100),
    /** HTTP API requests with a wrong or missing key per address per minute, after which the address gets 429. */
    apiAuthFailuresPerMinute: z.number().int().positive().default(20),
    /**
     * The same across all addresses of this instance; past it, every address that has sent a
     * wrong key this minute gets 429 too (addresses that have not are not slowed).
     */
    apiAuthFailuresPerMinuteTotal: z.number().int().positive().default(100),
    /** Subscribers of one room on this instance (server-side subscriptions too); unset: no limit. */
    maxSubscribersPerRoom: z.number().int().positive().optional(),
    outboundQueueBytes: z
      .number()
      .int()
      .min(1024)
      .default(4 * 1024 * 1024),
    maxHttpBodyBytes: z
      .number()
      .int()
      .min(256)
      .max(64 * 1024 * 1024)
      .default(1024 * 1024),
    maxInfoBytes: z.number().int().min(2).max(65_536).default(2048),
  })
  .strict();

export const jwtSchema = z
  .object({
    secret: z.string().min(1).optional(),
    publicKey: z.string().min(1).optional(),
    jwksUrl: z.url().optional(),
    issuer: z.string().min(1).optional(),
    audience: z.string().min(1).optional(),
  })
  .strict();

export const configSchema = z
  .object({
    port: z.number().int().min(0).max(65_535).default(8080),
    /** Absent: every interface, IPv4 and IPv6. */
    host: z.string().min(1).optional(),
    path: z
      .string()
      .regex(/^\/[^?#\s]*$/, "must start with / and contain no query, fragment or spaces")
      .default("/ws"),
    nodeId: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,64}$/, "must be 1-64 characters of A-Z a-z 0-9 _ . : -")
      .optional(),
    apiKey: z.string().min(8, "must be at least 8 characters").optional(),
    /** More keys accepted besides apiKey: two at once during a rotation. */
    apiKeys: z.array(z.string().min(8, "must be at least 8 characters")).max(16).optional(),
    redis: z
      .string()
      .regex(
        /^(rediss?|redis\+sentinel|rediss?\+cluster):\/\//,
        'must be a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL, e.g. "redis://127.0.0.1:6379", "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster" or "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"',
      )
      .superRefine((url, context) => {
        if (!url.startsWith(SENTINEL_SCHEME) && !isClusterUrl(url)) return;
        const problem = redisUrlProblem(url);
        if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
      })
      .optional(),
    redisPrefix: z.string().max(64).default("crier:"),
    /** NATS servers of the backplane; with JetStream, history, presence and membership too (docs/configuration.md). */
    nats: z
      .string()
      .superRefine((url, context) => {
        const problem = natsUrlProblem(url);
        if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
      })
      .optional(),
    /** A NATS .creds file (user JWT and NKey seed). */
    natsCreds: z.string().min(1).optional(),
    /** PEM files for TLS to NATS: the CA to trust, and a client certificate and key if the server asks for one. */
    natsTls: z
      .object({
        ca: z.string().min(1).optional(),
        cert: z.string().min(1).optional(),
        key: z.string().min(1).optional(),
      })
      .strict()
      .refine((tls) => (tls.cert === undefined) === (tls.key === undefined), "cert and key go together")
      .optional(),
    jwt: jwtSchema.default({}),
    proxy: proxySchema.optional(),
    allowAnonymous: z.boolean().optional(),
    /**
     * Proxies in front of crier whose X-Forwarded-For to believe (0: none, the
     * TCP peer is the client); per-address limits then count the client's address.
     */
    trustProxy: z.number().int().min(0).max(10).default(0),
    allowedOrigins: z
      .array(
        z
          .string()
          .min(1)
          .superRefine((entry, context) => {
            const problem = originEntryProblem(entry);
            if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
          }),
      )
      .optional(),
    clientSend: z.enum(["all", "authenticated", "none"]).default("authenticated"),
    /** Serve GET /dashboard: the operator's console, which calls /api/ with the API key typed into it. */
    dashboard: z.boolean().default(true),
    /** Serve GET /metrics on this port only (absent: on the main port, beside the API). */
    metricsPort: z.number().int().min(0).max(65_535).optional(),
    /** GET /metrics needs the API key, like /api/*. */
    metricsRequireKey: z.boolean().default(false),
    namespaces: z
      .record(z.string().regex(/^[A-Za-z0-9_\-.@/=]*$/, "is not a valid namespace name"), namespaceSchema)
      .default({}),
    limits: limitsSchema.default(limitsSchema.parse({})),
    timeouts: z
      .object({
        /** Seconds a new connection has to send `connect`. */
        connect: seconds(10),
        /** Seconds between server pings. */
        ping: seconds(25),
        /** Seconds a client has to answer a ping. */
        pong: seconds(10),
      })
      .strict()
      .prefault({})
      .transform(({ connect, ping, pong }) => ({
        connectMs: connect * 1000,
        pingMs: ping * 1000,
        pongMs: pong * 1000,
      })),
    delivery: z
      .object({
        /**
         * Milliseconds during which frames to a socket that was just written to
         * are held and sent together (0: only same-tick bursts are). Only
         * sockets receiving more than one frame per window ever wait.
         */
        coalesceMs: z.number().min(0).max(1000).default(10),
        /**
         * permessage-deflate for clients that offer it: each publication is
         * compressed once and the same bytes go to every such socket.
         */
        compression: z
          .object({
            enabled: z.boolean().default(false),
            /** Frames smaller than this go uncompressed: deflate gains little on them. */
            minBytes: z.number().int().min(0).max(16_777_216).default(512),
            /** zlib level: 1 is fastest, 9 smallest. */
            level: z.number().int().min(1).max(9).default(1),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    cluster: z
      .object({
        /** Seconds between heartbeats of this instance into the backplane. */
        heartbeat: seconds(2),
        /** Seconds of silence after which an instance is considered gone. */
        nodeTimeout: seconds(10),
      })
      .strict()
      .prefault({})
      .transform(({ heartbeat, nodeTimeout }) => ({
        heartbeatMs: heartbeat * 1000,
        nodeTimeoutMs: nodeTimeout * 1000,
      })),
    /** Processes serving the same port on this host (node:cluster); more than one needs `redis`. */
    workers: z.number().int().min(1).max(256).default(1),
    logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    /** JSON lines, or readable lines for a person; unset: pretty when stdout is a terminal (log.ts). */
    logFormat: z.enum(["json", "pretty"]).optional(),
  })
  .strict()
  .superRefine((config, ctx) => {
    for (const key of ["natsCreds", "natsTls"] as const) {
      if (config[key] !== undefined && config.nats === undefined) {
        ctx.addIssue({
          code: "custom",
          path: [key],
          message: "applies to NATS only: set nats (or CRIER_NATS_URL) too",
        });
      }
    }
    if (config.workers > 1 && config.redis === undefined && config.nats === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["workers"],
        message:
          "more than one worker needs redis or nats: the workers of a host share rooms and users through it (set redis, CRIER_REDIS_URL, nats or CRIER_NATS_URL)",
      });
    }
  });

/** The configuration as written by a user (before defaults). */
export type CrierConfigInput = z.input<typeof configSchema>;
/** The validated configuration with every default filled in. */
export type CrierConfig = z.output<typeof configSchema>;
export type NamespaceConfig = z.output<typeof namespaceSchema>;
export type LimitsConfig = z.output<typeof limitsSchema>;
export type JwtConfig = z.output<typeof jwtSchema>;
