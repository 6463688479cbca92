// The console's API on one instance (memory backplane): what GET /api/stats,
// /api/rooms, /api/subscribers, /api/connections and /api/warnings answer
// about real connections. The two-instance views over Redis are tested in a
// browser (test/integration/dashboard.test.ts).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startNode, type TestNode } from "../../../../test/support/node.js";
import { JWT_SECRET, token } from "../../../../test/support/tokens.js";
import { waitUntil } from "../../../../test/support/wait.js";
import type { ConnectionView } from "./views.js";

interface StatsReply {
  nodes: { node: string; ready: boolean; samples: { t: number; connections: number; messagesIn: number }[] }[];
  missing: unknown[];
}

describe("the console's API on one instance", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({
      nodeId: "solo",
      jwt: { secret: JWT_SECRET },
      limits: { commandsPerSecond: 3 },
      namespaces: { chat: { history: { size: 10, ttl: "1m" }, presence: true } },
    });
  });
  after(() => server.close());

  const as = async (user: string) => server.client({ token: await token({ sub: user }) });

  test("/api/stats: per-second samples with connections and publications, and only newer ones after `since`", async () => {
    const ann = await as("ann");
    await ann.call({ op: "subscribe", room: "chat:stats" });
    await server.api("/api/publish", { room: "chat:stats", data: 1 });
    let reply: StatsReply = { nodes: [], missing: [] };
    await waitUntil(
      "a sample counts the publication",
      async () => {
        reply = (await server.api("/api/stats")).body as StatsReply;
        return reply.nodes[0]?.samples.some((sample) => sample.messagesIn > 0) ?? false;
      },
      10_000,
    );
    const [solo] = reply.nodes;
    assert.equal(solo?.node, "solo");
    assert.equal(solo?.ready, true);
    assert.deepEqual(reply.missing, []);
    assert.ok(solo.samples.at(-1)?.connections === 1);
    const last = solo.samples.at(-1)?.t ?? 0;
    const newer = (await server.api(`/api/stats?since=${last}`)).body as StatsReply;
    assert.ok(newer.nodes[0]?.samples.every((sample) => sample.t > last));
    assert.equal((await server.api("/api/stats?since=-1")).status, 400);
    ann.close();
  });

  test("/api/rooms: busiest first, searchable, bounded; /api/subscribers lists a room's connections", async () => {
    const [bo, cy, di] = [await as("bo"), await as("cy"), await as("di")];
    for (const client of [bo, cy, di]) await client.call({ op: "subscribe", room: "chat:big" });
    await di.call({ op: "subscribe", room: "other:small" });
    const rooms = (await server.api("/api/rooms")).body as { rooms: { room: string; members: number }[] };
    assert.deepEqual(
      rooms.rooms.filter((r) => r.room === "chat:big" || r.room === "other:small").map((r) => [r.room, r.members]),
      [
        ["chat:big", 3],
        ["other:small", 1],
      ],
    );
    const searched = (await server.api("/api/rooms?search=small&limit=5")).body as { rooms: { room: string }[] };
    assert.deepEqual(
      searched.rooms.map((r) => r.room),
      ["other:small"],
    );
    assert.equal((await server.api("/api/rooms?limit=0")).status, 400);

    const reply = (await server.api("/api/subscribers?room=chat:big")).body as {
      history: boolean;
      presence: boolean;
      subscribers: { user: string; node: string }[];
    };
    assert.deepEqual(reply.subscribers.map((s) => `${s.user}@${s.node}`).sort(), ["bo@solo", "cy@solo", "di@solo"]);
    assert.equal(reply.history, true);
    assert.equal(reply.presence, true);
    const plain = (await server.api("/api/subscribers?room=other:small")).body as { history: boolean };
    assert.equal(plain.history, false);
    assert.equal((await server.api("/api/subscribers")).status, 400);
    for (const client of [bo, cy, di]) client.close();
  });

  test("/api/connections: a user's connections with client id, transport, address, since and rooms", async () => {
    const first = await as("eve");
    const second = await as("eve");
    await second.call({ op: "subscribe", room: "chat:eve" });
    const reply = (await server.api("/api/connections?user=eve")).body as { connections: ConnectionView[] };
    assert.equal(reply.connections.length, 2);
    const withRoom = reply.connections.find((c) => c.rooms.includes("chat:eve"));
    assert.ok(withRoom !== undefined);
    assert.equal(withRoom.node, "solo");
    assert.equal(withRoom.transport, "websocket crier.v1.json");
    assert.match(withRoom.address, /127\.0\.0\.1/);
    assert.ok(withRoom.connectedAt <= Date.now());
    assert.deepEqual((await server.api("/api/connections?user=nobody")).body, { connections: [], missing: [] });
    const missing = await server.api("/api/connections");
    assert.equal(missing.status, 400);
    assert.match(JSON.stringify(missing.body), /user/);
    first.close();
    second.close();
  });

  test("/api/warnings: rate limits and auth failures, counted and listed newest first", async () => {
    const fay = await as("fay");
    // Five commands at once against a limit of three per second: some are refused.
    await Promise.all(Array.from({ length: 5 }, () => fay.call({ op: "presence", room: "chat:w" })));
    const refused = await server.client({}).catch(() => undefined);
    assert.equal(refused, undefined, "no token: refused");
    const reply = (await server.api("/api/warnings")).body as {
      totals: Record<string, number>;
      recent: { kind: string; node: string; detail: string; at: number }[];
    };
    assert.ok((reply.totals.rate_limited ?? 0) >= 1, JSON.stringify(reply.totals));
    assert.equal(reply.totals.auth_failed, 1);
    assert.equal(reply.totals.slow_consumer, 0);
    assert.equal(reply.recent[0]?.kind, "auth_failed");
    assert.equal(reply.recent[0]?.node, "solo");
    assert.ok(reply.recent.some((w) => w.kind === "rate_limited" && w.detail.includes("fay")));
    const times = reply.recent.map((w) => w.at);
    assert.deepEqual(
      times,
      [...times].sort((x, y) => y - x),
    );
    fay.close();
  });

  test("every console route needs the API key", async () => {
    for (const path of [
      "/api/stats",
      "/api/rooms",
      "/api/subscribers?room=a",
      "/api/connections?user=a",
      "/api/warnings",
    ]) {
      const response = await fetch(`${server.httpUrl}${path}`);
      assert.equal(response.status, 401, path);
      await response.body?.cancel();
    }
  });
});
