// limits.maxSubscribersPerRoom on a live node: a subscribe past it gets
// rate_limited naming the key, server-side subscriptions count and are refused
// alike (an error push naming the room), other rooms are unaffected, a freed
// slot is reusable, and the refusals are counted and logged through the throttle.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { captureLog, refusedCount, startNode, type TestNode } from "../../../../test/support/node.js";
import { JWT_SECRET, token } from "../../../../test/support/tokens.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { TestClient } from "../../../../test/support/ws-client.js";

describe("limits.maxSubscribersPerRoom", () => {
  let server: TestNode;
  const log = captureLog();
  before(async () => {
    server = await startNode(
      { jwt: { secret: JWT_SECRET }, allowAnonymous: true, limits: { maxSubscribersPerRoom: 2 } },
      undefined,
      log.logger,
    );
  });
  after(() => server.close());

  test("past it a subscribe gets rate_limited; other rooms are unaffected; a freed slot is reusable", async () => {
    const [a, b, c] = [await server.client(), await server.client(), await server.client()];
    for (const client of [a, b]) assert.equal((await client.call({ op: "subscribe", room: "hall" })).op, "subscribed");
    const refused = await c.call({ op: "subscribe", room: "hall" });
    assert.deepEqual(refused.op === "error" ? refused.code : refused, "rate_limited");
    assert.match(
      refused.op === "error" ? refused.message : "",
      /room 'hall' has 2 subscribers.*limits\.maxSubscribersPerRoom/,
    );
    assert.equal((await c.call({ op: "subscribe", room: "other" })).op, "subscribed");
    // Refused, so not subscribed: it may try again once a slot is free.
    assert.equal((await c.call({ op: "unsubscribe", room: "hall" })).op, "error");
    assert.equal((await a.call({ op: "unsubscribe", room: "hall" })).op, "ok");
    assert.equal((await c.call({ op: "subscribe", room: "hall" })).op, "subscribed");
    assert.equal(server.node.hub.roomSize("hall"), 2);
    for (const client of [a, b, c]) client.close();
  });

  test("server-side subscriptions count, and are refused with an error push naming the room", async () => {
    const [a, b] = [await server.client(), await server.client()];
    for (const client of [a, b]) await client.call({ op: "subscribe", room: "notify:all" });
    const before = await refusedCount(server, "max_subscribers_per_room");
    const late = await TestClient.open(server.url);
    await late.call({ op: "connect", token: await token({ sub: "late", subs: ["notify:all"] }) });
    const failed = await late.seen((f) => f.op === "error", "the refused server-side subscription");
    assert.deepEqual(failed.op === "error" ? [failed.room, failed.code] : failed, ["notify:all", "rate_limited"]);
    assert.equal(await refusedCount(server, "max_subscribers_per_room"), before + 1);

    // The other way round: a server-side subscriber takes a slot a client then cannot.
    a.close();
    await waitUntil("the server sees the close", () => server.node.hub.roomSize("notify:all") === 1);
    const holder = await TestClient.open(server.url);
    await holder.call({ op: "connect", token: await token({ sub: "holder", subs: ["notify:all"] }) });
    await holder.seen((f) => f.op === "subscribed" && f.room === "notify:all", "the server-side subscription");
    const third = await late.call({ op: "subscribe", room: "notify:all" });
    assert.equal(third.op === "error" ? third.code : third.op, "rate_limited");
    for (const client of [b, late, holder]) client.close();
  });

  test("the refusals share one log line per interval, with the room", () => {
    const lines = log.lines.filter((line) => line.reason === "max_subscribers_per_room");
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.equal(lines[0]?.room, "hall");
    assert.equal(lines[0]?.msg, "subscribe refused: room full on this instance");
  });
});
