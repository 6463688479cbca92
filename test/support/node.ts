// Starts an in-process crier node on a free port, for tests of one instance's
// behaviour (multi-process tests use test/support/crier.ts instead).

import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { type Logger, pino } from "pino";
import type { CrierConfigInput } from "../../packages/server/src/config/schema.js";
import { type CrierHooks, CrierNode } from "../../packages/server/src/node.js";
import { TestClient } from "./ws-client.js";

export const API_KEY = "test-api-key-123";

export interface TestNode {
  node: CrierNode;
  port: number;
  url: string;
  httpUrl: string;
  /** Opens a client and completes `connect`. */
  client(connect?: Record<string, unknown>): Promise<TestClient>;
  /** Calls the HTTP API with the API key. */
  api(path: string, body?: unknown, init?: RequestInit): Promise<{ status: number; body: unknown }>;
  close(): Promise<void>;
}

/** A logger at `level` whose lines, parsed, land in `lines`: for tests of what is logged and how often. */
export function captureLog(level = "warn"): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n")) if (line !== "") lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level }, sink), lines };
}

/** `server`'s crier_refused_total for `reason` (0 before the first). */
export async function refusedCount(server: TestNode, reason: string): Promise<number> {
  const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text();
  const match = new RegExp(`crier_refused_total\\{reason="${reason}"[^}]*\\} (\\d+)`).exec(metrics);
  return Number(match?.[1] ?? 0);
}

export async function startNode(config: CrierConfigInput = {}, hooks?: CrierHooks, logger?: Logger): Promise<TestNode> {
  const node = await CrierNode.create({
    config: { apiKey: API_KEY, port: 0, host: "127.0.0.1", ...config },
    hooks,
    logger: logger ?? pino({ level: process.env.CRIER_TEST_LOG ?? "silent" }),
  });
  const address: AddressInfo = await node.listen();
  const url = `ws://127.0.0.1:${address.port}/ws`;
  const httpUrl = `http://127.0.0.1:${address.port}`;
  const clients: TestClient[] = [];
  return {
    node,
    port: address.port,
    url,
    httpUrl,
    async client(connect) {
      const client = await TestClient.connect(url, connect);
      clients.push(client);
      return client;
    },
    async api(path, body, init) {
      const response = await fetch(`${httpUrl}${path}`, {
        method: body === undefined ? "GET" : "POST",
        headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        ...init,
      });
      const text = await response.text();
      return { status: response.status, body: text === "" ? undefined : JSON.parse(text) };
    },
    async close() {
      for (const client of clients) client.ws.terminate();
      await node.close();
    },
  };
}
