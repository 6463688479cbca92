// Redis comes back older than what clients have seen: restarted from a
// snapshot taken before the last publications (or, with Sentinel, a lagging
// replica promoted). Its offsets then repeat ones clients already hold, and
// those clients would drop the new messages as duplicates without a word.
// crier must notice when it reconnects, close its members with 4504, and tell
// them recovered: false when they resubscribe.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CloseCode } from "crier-protocol";
import { Redis } from "ioredis";
import { api, type ConfigFile, type CrierInstance, startCrier, writeConfig } from "../support/crier.js";
import { type RedisProcess, startRedis } from "../support/redis.js";
import { waitUntil } from "../support/wait.js";
import { TestClient } from "../support/ws-client.js";

const ROOM = "chat:rollback";

let config: ConfigFile | undefined;
let redis: RedisProcess;
let crier: CrierInstance;

before(async () => {
  config = await writeConfig({ allowAnonymous: true, namespaces: { chat: { history: { size: 100, ttl: "10m" } } } });
  redis = await startRedis();
  crier = await startCrier({ args: ["--config", config.path, "--redis", redis.url] });
});

after(async () => {
  await crier?.stop();
  await redis?.stop();
  await config?.remove();
});

async function publish(data: string): Promise<number> {
  const reply = await api(crier, "/api/publish", { room: ROOM, data });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  return (reply.body as { offset: number }).offset;
}

test("Redis restarted from an older snapshot: members are closed with 4504 and told recovered: false", async () => {
  const client = await TestClient.connect(crier.url);
  const subscribed = await client.call({ op: "subscribe", room: ROOM });
  assert.equal(subscribed.op, "subscribed");
  const epoch = subscribed.op === "subscribed" ? subscribed.epoch : undefined;
  assert.equal(typeof epoch, "string");

  for (const n of [1, 2, 3]) assert.equal(await publish(`m${n}`), n);
  // The snapshot Redis will come back from: offsets up to 3.
  const admin = new Redis(redis.port, "127.0.0.1");
  try {
    assert.equal(await admin.save(), "OK");
  } finally {
    admin.disconnect();
  }
  for (const n of [4, 5, 6]) assert.equal(await publish(`m${n}`), n);
  await client.seen((f) => f.op === "message" && f.offset === 6, "offset 6");

  await redis.restart();
  const closed = await client.waitClosed(20_000);
  assert.equal(closed.code, CloseCode.MessagesLost);
  // The room's members were closed on this instance, and the metric says so.
  const metrics = await (await fetch(`${crier.httpUrl}/metrics`)).text();
  const lost = /^crier_rooms_lost_total(?:\{[^}]*\})? (\d+)/m.exec(metrics);
  assert.ok(lost !== null && Number(lost[1]) >= 1, `crier_rooms_lost_total in:\n${metrics.slice(0, 2000)}`);

  // Resubscribing from where it was: history cannot vouch for it.
  await waitUntil("crier is ready again", async () => (await fetch(`${crier.httpUrl}/readyz`)).status === 200, 20_000);
  const again = await TestClient.connect(crier.url);
  const resubscribed = await again.call({ op: "subscribe", room: ROOM, since: { offset: 6, epoch } });
  assert.equal(resubscribed.op, "subscribed");
  assert.equal(resubscribed.op === "subscribed" ? resubscribed.recovered : undefined, false);
  // And what is published now reaches it, whatever offset Redis hands out.
  const offset = await publish("after");
  const message = await again.seen((f) => f.op === "message" && f.data === "after", "the new message");
  assert.equal(message.op === "message" ? message.offset : undefined, offset);
  again.close();
});
