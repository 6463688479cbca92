// The connection limits on a live node: each refuses with its HTTP status
// before the upgrade (or, per user, with rate_limited and 4508 after connect),
// counts itself in crier_refused_total, and lets the well-behaved through.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { SignJWT } from "jose";
import { refusedCount, startNode, type TestNode } from "../../../../test/support/node.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { TestClient } from "../../../../test/support/ws-client.js";

/** Opens a connection from `localAddress`; the client, or the HTTP status the upgrade was refused with. */
async function attempt(url: string, localAddress?: string): Promise<TestClient | number> {
  try {
    return await TestClient.open(url, { localAddress });
  } catch (error) {
    const status = (error as { status?: unknown }).status;
    if (typeof status === "number") return status;
    throw error;
  }
}

describe("limits.maxConnections", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({ limits: { maxConnections: 2 } });
  });
  after(() => server.close());

  test("past it the upgrade gets 503, and a freed slot is reusable", async () => {
    const first = await server.client();
    await server.client();
    assert.equal(await attempt(server.url), 503);
    assert.equal(await refusedCount(server, "max_connections"), 1);
    first.close();
    await first.closed;
    await waitUntil("the server sees the close", () => server.node.connectionCount() === 1);
    const again = await attempt(server.url);
    assert.ok(again instanceof TestClient, `got ${String(again)}`);
  });
});

describe("limits.connectionsPerSecondPerIp and connectionsPerSecond", () => {
  test("one address past its rate gets 429 while another address still connects", async () => {
    const server = await startNode({ limits: { connectionsPerSecondPerIp: 3 } });
    try {
      const outcomes = await Promise.all([1, 2, 3, 4, 5, 6].map(() => attempt(server.url, "127.0.0.1")));
      const statuses = outcomes.filter((o) => typeof o === "number");
      assert.ok(statuses.length >= 3 && statuses.every((s) => s === 429), `statuses: ${statuses.join(",")}`);
      const other = await attempt(server.url, "127.0.0.2");
      assert.ok(other instanceof TestClient, `another address got ${String(other)}`);
      assert.ok((await refusedCount(server, "connections_per_second_per_ip")) >= 3);
    } finally {
      await server.close();
    }
  });

  test("the instance past its rate gets 503 from any address", async () => {
    const server = await startNode({ limits: { connectionsPerSecond: 4 } });
    try {
      const outcomes = await Promise.all(
        Array.from({ length: 10 }, (_, i) => attempt(server.url, `127.0.0.${10 + i}`)),
      );
      const statuses = outcomes.filter((o) => typeof o === "number");
      assert.ok(statuses.length >= 6 && statuses.every((s) => s === 503), `statuses: ${statuses.join(",")}`);
      assert.ok((await refusedCount(server, "connections_per_second")) >= 6);
    } finally {
      await server.close();
    }
  });
});

describe("a connection flood from many loopback addresses", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({
      limits: { maxConnections: 60, connectionsPerSecond: 40, connectionsPerSecondPerIp: 5, maxConnectionsPerIp: 20 },
      // The flood's sockets never send connect; on a slow machine the flood outlasts the default 10 s.
      timeouts: { connect: 600 },
    });
  });
  after(() => server.close());

  test("is refused with 429/503 while a connected client keeps being served", async () => {
    const good = await server.client();
    await good.call({ op: "subscribe", room: "steady" });
    const held: TestClient[] = [];
    const statuses = new Map<number, number>();
    let served = 0;
    let flooding = true;
    // The well-behaved client publishes to its room and waits for each message, all through the flood.
    const steady = (async () => {
      for (let i = 0; flooding || i < 5; i++) {
        const ack = await good.call({ op: "publish", room: "steady", data: i });
        assert.equal(ack.op, "ok", JSON.stringify(ack));
        await good.seen((f) => f.op === "message" && f.data === i, `message ${i}`);
        served++;
      }
    })();
    // 40 addresses, 15 attempts each, 10 at a time per address: bounded.
    await Promise.all(
      Array.from({ length: 40 }, async (_, a) => {
        for (let round = 0; round < 3; round++) {
          const outcomes = await Promise.all(Array.from({ length: 5 }, () => attempt(server.url, `127.0.1.${a + 1}`)));
          for (const outcome of outcomes) {
            if (outcome instanceof TestClient) held.push(outcome);
            else statuses.set(outcome, (statuses.get(outcome) ?? 0) + 1);
          }
        }
      }),
    );
    flooding = false;
    await steady;
    const refusedCount = [...statuses.values()].reduce((t, n) => t + n, 0);
    assert.ok(refusedCount > 0, "the flood was refused");
    assert.deepEqual(
      [...statuses.keys()].filter((s) => s !== 429 && s !== 503),
      [],
      "refusals are 429 or 503",
    );
    assert.ok(held.length < 60, `at most maxConnections got in (${held.length})`);
    assert.ok(served >= 5, "the good client was served during the flood");
    assert.equal(good.ws.readyState, good.ws.OPEN);
    for (const client of held) client.ws.terminate();
  });
});

describe("limits.maxConnectionsPerUser", () => {
  const secret = "per-user-secret-123";
  const token = (sub: string) =>
    new SignJWT({ sub })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("1h")
      .sign(new TextEncoder().encode(secret));
  let server: TestNode;
  before(async () => {
    server = await startNode({ jwt: { secret }, allowAnonymous: true, limits: { maxConnectionsPerUser: 2 } });
  });
  after(() => server.close());

  test("the user's next connect gets rate_limited and 4508; others and anonymous ones are not counted", async () => {
    const alice = await token("alice");
    const first = await server.client({ token: alice });
    await server.client({ token: alice });
    const third = await TestClient.open(server.url);
    const reply = await third.call({ op: "connect", token: alice });
    assert.equal(reply.op, "error");
    assert.equal(reply.op === "error" ? reply.code : "", "rate_limited");
    assert.equal((await third.closed).code, 4508);
    assert.equal(await refusedCount(server, "max_connections_per_user"), 1);
    await server.client({ token: await token("bob") });
    await server.client();
    await server.client();
    await server.client();
    // A closed connection gives its slot back.
    first.close();
    await first.closed;
    await waitUntil("the server sees the close", () => server.node.connectionCount() === 5);
    const again = await TestClient.open(server.url);
    assert.equal((await again.call({ op: "connect", token: alice })).op, "connected");
    again.close();
  });
});

describe("trustProxy", () => {
  test("behind a trusted proxy, per-address limits count the address it forwarded", async () => {
    const server = await startNode({ trustProxy: 1, limits: { maxConnectionsPerIp: 1 } });
    try {
      const from = (address: string) =>
        TestClient.open(server.url, { headers: { "X-Forwarded-For": `6.6.6.6, ${address}` } }).then(
          (client) => client,
          (error: { status?: number }) => error.status,
        );
      const first = await from("203.0.113.1");
      const second = await from("203.0.113.2");
      assert.ok(first instanceof TestClient && second instanceof TestClient, "two clients behind one proxy");
      assert.equal(await from("203.0.113.1"), 429);
      first.ws.terminate();
      second.ws.terminate();
    } finally {
      await server.close();
    }
  });
});
