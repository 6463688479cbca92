// The origin policy: what a browser page of which site may open, decided
// before the upgrade; by default, pages of the server's own host only.

import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { startNode, type TestNode } from "../../../../test/support/node.js";
import { TestClient } from "../../../../test/support/ws-client.js";
import { CrierNode } from "../node.js";
import { originPolicy } from "./origin.js";

describe("originPolicy", () => {
  test("by default only the request's own host and port, whatever the scheme", () => {
    const allowed = originPolicy(undefined);
    assert.equal(allowed("https://chat.example.com", "chat.example.com"), true);
    assert.equal(allowed("http://chat.example.com:8080", "chat.example.com:8080"), true);
    assert.equal(allowed("https://CHAT.example.com", "chat.example.com:443"), true);
    assert.equal(allowed("https://chat.example.com", "chat.example.com:8443"), false);
    assert.equal(allowed("https://evil.example", "chat.example.com"), false);
    assert.equal(allowed("null", "chat.example.com"), false);
    assert.equal(allowed("https://chat.example.com", undefined), false);
    assert.equal(allowed(undefined, "chat.example.com"), true);
  });

  test("a list allows its origins and patterns only", () => {
    const allowed = originPolicy(["https://app.example.com", "https://*.example.org/", "http://localhost:*"]);
    assert.equal(allowed("https://app.example.com", "ws.example.com"), true);
    assert.equal(allowed("https://eu.app.example.org", "ws.example.com"), true);
    assert.equal(allowed("http://localhost:5173", "ws.example.com"), true);
    assert.equal(allowed("https://example.org", "ws.example.com"), false);
    assert.equal(allowed("https://evil-example.org", "ws.example.com"), false);
    assert.equal(allowed("https://app.example.com.evil.example", "ws.example.com"), false);
    assert.equal(allowed("https://ws.example.com", "ws.example.com"), false, "a list replaces same-host");
    assert.equal(allowed(undefined, "ws.example.com"), true);
  });

  test('"*" allows any origin', () => {
    const allowed = originPolicy(["*"]);
    assert.equal(allowed("https://anything.example", "ws.example.com"), true);
    assert.equal(allowed("null", "ws.example.com"), true);
  });
});

describe("the default origin policy on a live node", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode();
  });
  after(() => server.close());

  test("a page of the server's own host connects", async () => {
    const origin = `http://127.0.0.1:${server.port}`;
    const client = await TestClient.open(server.url, { headers: { Origin: origin } });
    assert.equal((await client.call({ op: "connect" })).op, "connected");
    client.close();
  });

  test("a page of another site is refused with 403 before the upgrade, and counted", async () => {
    await assert.rejects(
      TestClient.open(server.url, { headers: { Origin: "https://evil.example" } }),
      (error: Error & { status?: number }) => error.status === 403,
    );
    // Another port of the same address is another origin.
    await assert.rejects(
      TestClient.open(server.url, { headers: { Origin: `http://127.0.0.1:${server.port + 1}` } }),
      (error: Error & { status?: number }) => error.status === 403,
    );
    const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text();
    assert.match(metrics, /crier_refused_total\{reason="origin",node="[^"]+"\} 2/);
    assert.equal(server.node.connectionCount(), 0);
  });

  test("a client that sends no Origin (not a browser) connects", async () => {
    const client = await server.client();
    assert.equal(client.ws.readyState, client.ws.OPEN);
    client.close();
  });
});

describe('allowedOrigins: ["*"]', () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({ allowedOrigins: ["*"] });
  });
  after(() => server.close());

  test("pages of any site connect", async () => {
    const client = await TestClient.open(server.url, { headers: { Origin: "https://elsewhere.example" } });
    assert.equal((await client.call({ op: "connect" })).op, "connected");
    client.close();
  });
});

test('allowedOrigins: ["*"] is logged as a warning at start; the default is not', async () => {
  const warnings = async (config: Record<string, unknown>): Promise<string[]> => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const node = await CrierNode.create({
      config: { apiKey: "test-api-key-123", ...config },
      logger: pino({ level: "warn" }, sink),
    });
    await node.close();
    return lines.filter((line) => line.includes("allowedOrigins"));
  };
  assert.equal((await warnings({ allowedOrigins: ["*"] })).length, 1);
  assert.deepEqual(await warnings({}), []);
});
