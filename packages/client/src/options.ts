// The client's options, their defaults and their validation: a bad option fails in
// the constructor, not as a confusing reconnect loop later.

import type { JsonObject } from "crier-protocol";
import type { Jitter } from "./backoff.js";
import { type Codec, jsonCodec } from "./codec.js";
import type { WebSocketConstructor } from "./socket.js";
import { resolveTransports, type TransportName } from "./transports.js";

export type TokenSource = string | (() => string | Promise<string>);

export interface ClientOptions {
  /** A JWT, or a function returning one: called before the first connect and again after the server closes with 4005 (token expired). */
  token?: TokenSource;
  /** A small JSON object shown in presence. */
  info?: JsonObject;
  /** Client name/version, sent with `connect`. */
  name?: string;
  /** The WebSocket implementation: globalThis.WebSocket by default; in Node 20 pass the `ws` package's WebSocket. */
  WebSocket?: WebSocketConstructor;
  /** The encoding: JSON by default; `msgpackCodec` from `crier-client/msgpack` for crier.v1.msgpack. */
  codec?: Codec;
  /** Subprotocols offered to the server; by default the codec's. The server must choose the codec's. */
  protocols?: string[];
  /** How long a command waits for its reply (and a connection for its `connected`), in ms. Default 10000. */
  ackTimeoutMs?: number;
  /** First reconnect delay ceiling, in ms. Default 200. */
  minReconnectDelayMs?: number;
  /** Largest reconnect delay, in ms. Default 10000. */
  maxReconnectDelayMs?: number;
  /** Reconnect jitter: "equal" (default, between half the ceiling and the ceiling) or "full" (between 0 and the ceiling). */
  jitter?: Jitter;
  /** How long past the server's ping interval the client waits, hearing nothing, before it calls the connection dead. Default 10000. */
  pingMarginMs?: number;
  /** Commands issued while (re)connecting wait for the connection, up to this many; beyond, they reject. 0 rejects them at once. Default 100. */
  maxQueuedCommands?: number;
  /** Transports in the order tried: ["websocket", "sse"] when `sse` is given (and the codec is JSON), else ["websocket"]. */
  transports?: TransportName[];
  /** The HTTP fallback: `SseSocket` from `crier-client/sse`, used when a WebSocket cannot open or closes before `connected`. */
  sse?: WebSocketConstructor;
  /** GET /sse's URL (POST /emulation is its sibling); by default beside the WebSocket URL: ws://host/ws gives http://host/sse. */
  sseUrl?: string;
}

export interface ResolvedOptions extends ClientOptions {
  /** Undefined only when transports leaves "websocket" out. */
  WebSocket: WebSocketConstructor | undefined;
  transports: TransportName[];
  codec: Codec;
  protocols: string[];
  ackTimeoutMs: number;
  minReconnectDelayMs: number;
  maxReconnectDelayMs: number;
  jitter: Jitter;
  pingMarginMs: number;
  maxQueuedCommands: number;
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  const resolved = value ?? fallback;
  if (!Number.isFinite(resolved) || resolved < 0) {
    throw new RangeError(`crier-client: option '${name}' must be a finite number >= 0, got ${String(value)}`);
  }
  return resolved;
}

export function resolveOptions(options: ClientOptions): ResolvedOptions {
  const WebSocket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor | undefined }).WebSocket;
  const codec = options.codec ?? jsonCodec;
  const transports = resolveTransports(options, codec);
  if (WebSocket === undefined && transports.includes("websocket")) {
    throw new TypeError(
      "crier-client: no WebSocket implementation; pass options.WebSocket (in Node 20: the `ws` package's WebSocket)",
    );
  }
  const minReconnectDelayMs = nonNegative("minReconnectDelayMs", options.minReconnectDelayMs, 200);
  const maxReconnectDelayMs = nonNegative("maxReconnectDelayMs", options.maxReconnectDelayMs, 10_000);
  if (maxReconnectDelayMs < minReconnectDelayMs) {
    throw new RangeError("crier-client: maxReconnectDelayMs must be >= minReconnectDelayMs");
  }
  const jitter = options.jitter ?? "equal";
  if (jitter !== "full" && jitter !== "equal") {
    throw new RangeError(`crier-client: option 'jitter' must be "full" or "equal", got ${String(jitter)}`);
  }
  if (options.protocols !== undefined && !options.protocols.includes(codec.protocol)) {
    throw new RangeError(
      `crier-client: option 'protocols' must include ${codec.protocol}, the codec's subprotocol, got ${JSON.stringify(options.protocols)}`,
    );
  }
  return {
    ...options,
    WebSocket,
    transports,
    codec,
    protocols: options.protocols ?? [codec.protocol],
    ackTimeoutMs: nonNegative("ackTimeoutMs", options.ackTimeoutMs, 10_000),
    minReconnectDelayMs,
    maxReconnectDelayMs,
    jitter,
    pingMarginMs: nonNegative("pingMarginMs", options.pingMarginMs, 10_000),
    maxQueuedCommands: Math.floor(nonNegative("maxQueuedCommands", options.maxQueuedCommands, 100)),
  };
}
