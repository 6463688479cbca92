// The HTTP API of docs/protocol.md against a running node: auth, validation, limits,
// and that what it publishes reaches WebSocket clients.

import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { after, before, describe, test } from "node:test";
import { API_KEY, captureLog, refusedCount, startNode, type TestNode } from "../../../../test/support/node.js";
import { JWT_SECRET, token } from "../../../../test/support/tokens.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { loadConfig } from "../config/load.js";

describe("HTTP API", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({
      jwt: { secret: JWT_SECRET },
      allowAnonymous: true,
      limits: { maxHttpBodyBytes: 1024 },
    });
  });
  after(() => server.close());

  test("healthz and readyz need no key and answer 200", async () => {
    for (const path of ["/healthz", "/readyz"]) {
      const response = await fetch(`${server.httpUrl}${path}`);
      assert.equal(response.status, 200, path);
    }
  });

  test("a missing key is 401 with an error body saying what to send", async () => {
    const response = await fetch(`${server.httpUrl}/api/publish`, { method: "POST", body: "{}" });
    assert.equal(response.status, 401);
    const body = (await response.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, "unauthorized");
    assert.match(body.error.message, /Authorization: Bearer/);
  });

  test("a wrong key is 401", async () => {
    const response = await fetch(`${server.httpUrl}/api/info`, { headers: { Authorization: "Bearer wrong" } });
    assert.equal(response.status, 401);
  });

  test("POST /api/publish reaches subscribers; no offset for rooms without history", async () => {
    const client = await server.client();
    await client.call({ op: "subscribe", room: "news" });
    const result = await server.api("/api/publish", { room: "news", data: { headline: "crier ships" } });
    assert.deepEqual(result, { status: 200, body: {} });
    assert.deepEqual(await client.next("message"), { op: "message", room: "news", data: { headline: "crier ships" } });
    client.close();
  });

  test("POST /api/broadcast reaches every listed room", async () => {
    const a = await server.client();
    const b = await server.client();
    await a.call({ op: "subscribe", room: "b1" });
    await b.call({ op: "subscribe", room: "b2" });
    const result = await server.api("/api/broadcast", { rooms: ["b1", "b2"], data: "all" });
    assert.deepEqual(result, { status: 200, body: { results: [{ room: "b1" }, { room: "b2" }] } });
    assert.deepEqual(await a.next("message"), { op: "message", room: "b1", data: "all" });
    assert.deepEqual(await b.next("message"), { op: "message", room: "b2", data: "all" });
    a.close();
    b.close();
  });

  test("POST /api/send reaches the user's connections, without from", async () => {
    const client = await server.client({ token: await token({ sub: "zoe" }) });
    const result = await server.api("/api/send", { user: "zoe", data: [1, 2, 3] });
    assert.equal(result.status, 200);
    assert.deepEqual(await client.next("direct"), { op: "direct", data: [1, 2, 3] });
    client.close();
  });

  test("POST /api/disconnect closes a user's connections with the given code", async () => {
    const client = await server.client({ token: await token({ sub: "kick-me" }) });
    const result = await server.api("/api/disconnect", { user: "kick-me", code: 4004, reason: "banned" });
    assert.equal(result.status, 200);
    assert.deepEqual(await client.waitClosed(), { code: 4004, reason: "banned" });
  });

  test("POST /api/disconnect by client id closes that connection only", async () => {
    const keep = await server.client();
    const target = await server.client();
    const connected = target.frames.find((f) => f.op === "connected");
    assert.ok(connected?.op === "connected");
    await server.api("/api/disconnect", { client: connected.client });
    assert.equal((await target.waitClosed()).code, 4004);
    assert.equal((await keep.call({ op: "subscribe", room: "still-here" })).op, "subscribed");
    keep.close();
  });

  test("POST /api/unsubscribe removes a user from a room", async () => {
    const client = await server.client({ token: await token({ sub: "leaver" }) });
    await client.call({ op: "subscribe", room: "club" });
    assert.equal((await server.api("/api/unsubscribe", { user: "leaver", room: "club" })).status, 200);
    assert.deepEqual(await client.next("unsubscribed"), { op: "unsubscribed", room: "club" });
    const reply = await client.call({ op: "unsubscribe", room: "club" });
    assert.equal(reply.op === "error" && reply.code, "not_subscribed");
    client.close();
  });

  const invalid: [string, string, unknown, number, RegExp][] = [
    ["a bad room", "/api/publish", { room: "a b", data: 1 }, 400, /field 'room'/],
    ["missing data", "/api/publish", { room: "a" }, 400, /field 'data'/],
    ["an unknown field", "/api/publish", { room: "a", data: 1, extra: 2 }, 400, /unknown field extra/],
    ["an empty user", "/api/send", { user: "", data: 1 }, 400, /field 'user'/],
    ["no rooms", "/api/broadcast", { rooms: [], data: 1 }, 400, /field 'rooms'/],
    ["both user and client", "/api/disconnect", { user: "a", client: "b" }, 400, /exactly one/],
    ["a code outside 4000-4999", "/api/disconnect", { user: "a", code: 1000 }, 400, /field 'code'/],
    ["a body over the limit", "/api/publish", { room: "a", data: "x".repeat(2000) }, 413, /maxHttpBodyBytes/],
  ];
  for (const [name, path, body, status, message] of invalid) {
    test(`${name} is ${status} with a message naming it`, async () => {
      const result = await server.api(path, body);
      assert.equal(result.status, status);
      const error = (result.body as { error: { message: string } }).error;
      assert.match(error.message, message);
    });
  }

  test("a body that is not JSON is 400", async () => {
    const result = await server.api("/api/publish", undefined, { method: "POST", body: "{nope" });
    assert.equal(result.status, 400);
  });

  test("an unknown endpoint is 404 and a wrong method is 405", async () => {
    assert.equal((await server.api("/api/nothing")).status, 404);
    assert.equal((await server.api("/api/publish")).status, 405);
  });

  test("presence and history on a namespace without them are 400", async () => {
    assert.equal((await server.api("/api/presence?room=x")).status, 400);
    assert.equal((await server.api("/api/history?room=x")).status, 400);
  });

  test("GET /api/info describes this node", async () => {
    const client = await server.client();
    const result = await server.api("/api/info");
    assert.equal(result.status, 200);
    const info = result.body as { nodes: { id: string; connections: number }[] };
    assert.equal(info.nodes[0]?.id, server.node.nodeId);
    assert.ok((info.nodes[0]?.connections ?? 0) >= 1);
    client.close();
  });

  test("GET /metrics needs no key and counts connections, deliveries and disconnects by code", async () => {
    /** The value of a sample, by metric name and (optionally) one label. */
    const metric = async (name: string, label = ""): Promise<number> => {
      const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
      const line = text
        .split("\n")
        .find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(label));
      return line === undefined ? 0 : Number(line.split(" ").at(-1));
    };
    const response = await fetch(`${server.httpUrl}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /text\/plain/);
    const before = await metric("crier_deliveries_total");
    const a = await server.client();
    const b = await server.client();
    await a.call({ op: "subscribe", room: "metered" });
    await b.call({ op: "subscribe", room: "metered" });
    await server.api("/api/publish", { room: "metered", data: 1 });
    await a.next("message");
    await b.next("message");
    assert.equal((await metric("crier_deliveries_total")) - before, 2);
    assert.ok((await metric("crier_connections")) >= 2);
    a.sendRaw("{bad");
    await a.waitClosed();
    await waitUntil(
      "the 4002 close is counted",
      async () => (await metric("crier_disconnects_total", 'code="4002"')) >= 1,
    );
    b.close();
  });
});

describe("GET /dashboard", () => {
  test("serves the built console without a key (it asks for one), locked down by a CSP without inline code", async () => {
    const node = await startNode();
    try {
      const response = await fetch(`${node.httpUrl}/dashboard`);
      assert.equal(response.status, 200);
      assert.match(response.headers.get("content-type") ?? "", /^text\/html/);
      const csp = response.headers.get("content-security-policy") ?? "";
      assert.match(csp, /default-src 'none'.*script-src 'self'.*connect-src 'self'/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      const page = await response.text();
      assert.doesNotMatch(page, new RegExp(API_KEY), "the page carries no key");
      const scripts = [...page.matchAll(/<script\b([^>]*)>/g)].map((match) => match[1] ?? "");
      assert.ok(scripts.length > 0, "the page loads a script");
      for (const attributes of scripts) assert.match(attributes, /src="\/dashboard\/assets\//, "no inline script");
      assert.doesNotMatch(page, /<style|style="/, "no inline style");
      const src = /src="(\/dashboard\/assets\/[^"]+\.js)"/.exec(page)?.[1] ?? "";
      const script = await fetch(`${node.httpUrl}${src}`);
      assert.equal(script.status, 200);
      assert.match(script.headers.get("content-type") ?? "", /^text\/javascript/);
      assert.match(await script.text(), /\/api\/stats/);
      const missing = await fetch(`${node.httpUrl}/dashboard/assets/nothing.js`);
      assert.equal(missing.status, 404);
      await missing.body?.cancel();
      const outside = await fetch(`${node.httpUrl}/dashboard/..%2Fpackage.json`);
      assert.equal(outside.status, 404, "only the built files are served");
      await outside.body?.cancel();
    } finally {
      await node.close();
    }
  });

  test("dashboard: false turns it off", async () => {
    const node = await startNode({ dashboard: false });
    try {
      const response = await fetch(`${node.httpUrl}/dashboard`);
      assert.equal(response.status, 404);
      await response.body?.cancel();
    } finally {
      await node.close();
    }
  });

  test("--dashboard takes true or false, since a bare flag could not turn it off", () => {
    assert.equal(loadConfig({ flags: { dashboard: "false" } }).dashboard, false);
    assert.equal(loadConfig({ env: { CRIER_DASHBOARD: "off" } }).dashboard, false);
    assert.equal(loadConfig({}).dashboard, true);
    assert.throws(() => loadConfig({ flags: { dashboard: "maybe" } }), /dashboard/);
  });
});

interface RequestOptions {
  localAddress?: string;
  headers?: Record<string, string>;
  method?: string;
  body?: string;
}

/** A request from `localAddress` with `headers`, through node:http (fetch cannot choose the source address). */
function answer(
  url: string,
  options: RequestOptions = {},
): Promise<{ status: number; retryAfter: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: options.method ?? "GET", headers: options.headers, localAddress: options.localAddress },
      (response) => {
        response.resume();
        const retryAfter = response.headers["retry-after"];
        resolve({ status: response.statusCode ?? 0, retryAfter });
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

/** The status of answer(). */
async function request(url: string, options: RequestOptions = {}): Promise<number> {
  return (await answer(url, options)).status;
}

describe("HTTP API hardening", () => {
  const OLD_KEY = "old-api-key-456";
  let server: TestNode;
  before(async () => {
    server = await startNode({
      apiKeys: [OLD_KEY],
      metricsRequireKey: true,
      limits: { apiAuthFailuresPerMinute: 3, maxHttpBodyBytes: 1024 },
    });
  });
  after(() => server.close());

  test("during a rotation both keys are accepted", async () => {
    for (const key of [API_KEY, OLD_KEY]) {
      assert.equal(await request(`${server.httpUrl}/api/info`, { headers: { Authorization: `Bearer ${key}` } }), 200);
    }
  });

  test("an address that keeps sending wrong keys gets 429, even with the right key; other addresses do not", async () => {
    const from = { localAddress: "127.0.0.3" };
    const wrong = { ...from, headers: { Authorization: "Bearer guess-0001" } };
    for (let i = 0; i < 3; i++) assert.equal(await request(`${server.httpUrl}/api/info`, wrong), 401);
    assert.equal(await request(`${server.httpUrl}/api/info`, wrong), 429);
    const right = { headers: { Authorization: `Bearer ${API_KEY}` } };
    assert.equal(await request(`${server.httpUrl}/api/info`, { ...from, ...right }), 429);
    assert.equal(await request(`${server.httpUrl}/api/info`, { localAddress: "127.0.0.4", ...right }), 200);
  });

  test("the per-address 429 carries Retry-After: the seconds left of the minute", async () => {
    const wrong = { localAddress: "127.0.0.6", headers: { Authorization: "Bearer guess-0002" } };
    for (let i = 0; i < 3; i++) await request(`${server.httpUrl}/api/info`, wrong);
    const refused = await answer(`${server.httpUrl}/api/info`, wrong);
    assert.equal(refused.status, 429);
    const seconds = Number(refused.retryAfter);
    assert.ok(Number.isInteger(seconds) && seconds >= 1 && seconds <= 60, `Retry-After: ${refused.retryAfter}`);
  });

  test("a body over the limit is 413 on routes that take none, too", async () => {
    const big = "x".repeat(5000);
    assert.equal(await request(`${server.httpUrl}/healthz`, { method: "POST", body: big }), 413);
    assert.equal(
      await request(`${server.httpUrl}/api/info`, {
        headers: { Authorization: `Bearer ${API_KEY}` },
        method: "POST",
        body: big,
      }),
      413,
    );
  });

  test("metricsRequireKey: /metrics needs the key", async () => {
    assert.equal(await request(`${server.httpUrl}/metrics`, { localAddress: "127.0.0.5" }), 401);
    const response = await fetch(`${server.httpUrl}/metrics`, { headers: { Authorization: `Bearer ${API_KEY}` } });
    assert.equal(response.status, 200);
    assert.match(await response.text(), /crier_connections/);
  });
});

describe("metricsPort", () => {
  test("/metrics moves to its own listener", async () => {
    const server = await startNode({ metricsPort: 0 });
    try {
      assert.equal((await fetch(`${server.httpUrl}/metrics`)).status, 404);
      const port = server.node.metricsAddress()?.port;
      assert.ok(port !== undefined && port !== server.port);
      const response = await fetch(`http://127.0.0.1:${port}/metrics`);
      assert.equal(response.status, 200);
      assert.match(await response.text(), /crier_refused_total|crier_connections/);
      assert.equal((await fetch(`http://127.0.0.1:${port}/api/info`)).status, 404);
    } finally {
      await server.close();
    }
  });
});

describe("limits.apiAuthFailuresPerMinuteTotal", () => {
  let server: TestNode;
  const log = captureLog();
  before(async () => {
    server = await startNode(
      { limits: { apiAuthFailuresPerMinute: 3, apiAuthFailuresPerMinuteTotal: 4 } },
      undefined,
      log.logger,
    );
  });
  after(() => server.close());

  test("many addresses, one wrong key each: past the instance's cap they get 429, clean addresses with the key do not", async () => {
    const info = `${server.httpUrl}/api/info`;
    const guess = (n: number) => ({
      localAddress: `127.0.0.${20 + n}`,
      headers: { Authorization: `Bearer guess-${n}` },
    });
    // Four addresses, one guess each: within every limit, each is told its key is wrong.
    for (let n = 0; n < 4; n++) assert.equal(await request(info, guess(n)), 401, `guess ${n}`);
    // The fifth failure of the minute on this instance, from an address that never failed: 429, not 401.
    const fifth = await answer(info, guess(4));
    assert.equal(fifth.status, 429);
    assert.ok(Number(fifth.retryAfter) >= 1, `Retry-After: ${fifth.retryAfter}`);
    // An address that failed once cannot use the right key now either, so a later right guess is not told apart.
    const right = { headers: { Authorization: `Bearer ${API_KEY}` } };
    assert.equal(await request(info, { ...right, localAddress: "127.0.0.21" }), 429);
    // Addresses that have not failed still get in with the right key.
    for (const address of ["127.0.0.40", "127.0.0.41"]) {
      assert.equal(await request(info, { ...right, localAddress: address }), 200, address);
    }
    assert.equal(await refusedCount(server, "api_auth_failures_total"), 2);
    assert.equal(await refusedCount(server, "api_auth_failures"), 0, "no address passed its own limit");
    const lines = log.lines.filter((line) => line.reason === "api_auth_failures_total");
    assert.equal(lines.length, 1, "one log line for both refusals within the interval");
    assert.match(String(lines[0]?.msg), /too many wrong keys on this instance/);
  });
});
