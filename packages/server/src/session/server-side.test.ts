// Server-side subscriptions (a JWT `subs` claim) on one instance over real
// WebSockets: listed in `connected`, confirmed by `subscribed` pushes, resumed
// from the positions a `connect` gives, and a failure named by its room
// (docs/protocol.md "Server-side subscriptions, decided").

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { ServerFrame } from "crier-protocol";
import { startNode, type TestNode } from "../../../../test/support/node.js";
import { JWT_SECRET, token } from "../../../../test/support/tokens.js";
import { TestClient } from "../../../../test/support/ws-client.js";

const pushed = (room: string) => (frame: ServerFrame) => frame.op === "subscribed" && frame.room === room;

describe("server-side subscriptions", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({
      jwt: { secret: JWT_SECRET },
      limits: { maxSubscriptions: 2 },
      namespaces: { notify: { history: { size: 100, ttl: "10m" } } },
    });
  });
  after(() => server.close());

  test("connected lists them; each is confirmed by a subscribed push without id", async () => {
    const client = await TestClient.open(server.url);
    const connected = await client.call({
      op: "connect",
      token: await token({ sub: "ann", subs: ["notify:ann", "plain"] }),
    });
    assert.deepEqual(connected.op === "connected" ? connected.subs : connected, ["notify:ann", "plain"]);
    const notify = await client.seen(pushed("notify:ann"), "notify:ann's push");
    assert.equal("id" in notify, false);
    assert.equal(notify.op === "subscribed" && typeof notify.epoch, "string");
    const plain = await client.seen(pushed("plain"), "plain's push");
    assert.deepEqual(plain, { op: "subscribed", room: "plain", recovered: false });
    client.close();
  });

  test("a connect without subs claim lists none", async () => {
    const client = await TestClient.open(server.url);
    const connected = await client.call({ op: "connect", token: await token({ sub: "dan" }) });
    assert.deepEqual([connected.op, "subs" in connected], ["connected", false]);
    client.close();
  });

  test("a connect giving a position resumes from it: the missed messages, once each, then live ones", async () => {
    const jwt = await token({ sub: "bob", subs: ["notify:bob"] });
    const first = await TestClient.open(server.url);
    await first.call({ op: "connect", token: jwt });
    const start = await first.seen(pushed("notify:bob"), "the first push");
    if (start.op !== "subscribed" || start.offset === undefined || start.epoch === undefined)
      throw new Error("no position");
    await server.api("/api/publish", { room: "notify:bob", data: 1 });
    const one = await first.seen((f) => f.op === "message" && f.data === 1, "message 1");
    first.close();
    const seenAt = { offset: one.op === "message" ? (one.offset ?? -1) : -1, epoch: start.epoch };
    for (const data of [2, 3]) await server.api("/api/publish", { room: "notify:bob", data });

    const second = await TestClient.open(server.url);
    await second.call({ op: "connect", token: jwt, subs: { "notify:bob": seenAt, "not-mine": seenAt } });
    const resumed = await second.seen(pushed("notify:bob"), "the resumed push");
    assert.equal(resumed.op === "subscribed" && resumed.recovered, true);
    await server.api("/api/publish", { room: "notify:bob", data: 4 });
    await second.seen((f) => f.op === "message" && f.data === 4, "the live message");
    assert.deepEqual(
      second.all("message").map((f) => (f.op === "message" ? f.data : undefined)),
      [2, 3, 4],
    );
    assert.equal(
      second.frames.some((f) => f.op === "subscribed" && f.room === "not-mine"),
      false,
      "a position for a room the server does not subscribe is ignored",
    );
    second.close();
  });

  test("one that fails comes as an error push naming its room", async () => {
    const client = await TestClient.open(server.url);
    await client.call({ op: "connect", token: await token({ sub: "cat", subs: ["a", "b", "c"] }) });
    const failed = await client.seen((f) => f.op === "error", "the third one's error");
    assert.deepEqual(failed.op === "error" ? [failed.room, failed.code, "id" in failed] : failed, [
      "c",
      "forbidden",
      false,
    ]);
    assert.match(failed.op === "error" ? failed.message : "", /limits\.maxSubscriptions/);
    client.close();
  });
});
