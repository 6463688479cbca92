// Test support: clients of the SDK against a FakeServer, with everything a test
// starts (servers, clients, children) ended after it, and the waits the tests share.

import { after, afterEach } from "node:test";
import { WebSocket } from "ws";
import { type ClientEvents, CrierClient } from "../client.js";
import type { ClientOptions } from "../options.js";
import { type FakeConnection, FakeServer, type FakeServerOptions, type Frame } from "./fake-server.js";

/** What a test started, ended after it in reverse order; a test may push its own. */
export const cleanups: (() => unknown)[] = [];

/** Registers the hooks that run `cleanups`: call once at the top of a test file. */
export function cleanUpAfterEach(): void {
  const run = async (): Promise<void> => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  };
  afterEach(run);
  after(run);
}

export async function startServer(options: FakeServerOptions = {}): Promise<FakeServer> {
  const server = await FakeServer.start(options);
  cleanups.push(() => server.stop());
  return server;
}

export function makeClient(server: FakeServer, options: ClientOptions = {}): CrierClient {
  const client = new CrierClient(server.url, {
    WebSocket,
    minReconnectDelayMs: 5,
    maxReconnectDelayMs: 40,
    ...options,
  });
  cleanups.push(() => client.close());
  return client;
}

export function nextEvent<K extends keyof ClientEvents>(client: CrierClient, event: K): Promise<ClientEvents[K]> {
  return new Promise((resolve) => client.once(event, resolve));
}

/** Connects and returns the server side of the connection, its `connect` frame already read. */
export async function connected(client: CrierClient, server: FakeServer): Promise<FakeConnection> {
  const [, connection] = await Promise.all([client.connect(), server.nextConnection()]);
  await connection.next("connect");
  return connection;
}

export function subscribedReply(frame: Frame, extra: Frame): Frame {
  return { op: "subscribed", id: frame.id, room: frame.room, recovered: false, ...extra };
}
