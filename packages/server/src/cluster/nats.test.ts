// What only the NATS membership does (the contract suite, membership.contract.test.ts,
// covers the rest): entries in a KV bucket whose TTL is the node timeout, kept
// at the timeout configured now even if an earlier configuration made the
// bucket with another.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type NatsProcess, startNats } from "../../../../test/support/nats.js";
import { encodeToken, NatsLink, natsNames } from "../nats/connection.js";
import type { NodeInfo } from "./membership.js";
import { NatsMembership } from "./nats.js";

let nats: NatsProcess;
before(async () => {
  nats = await startNats();
});
after(async () => {
  await nats.stop();
});

function nodeInfo(id: string): () => NodeInfo {
  const startedAt = Date.now();
  return () => ({ id, address: "10.0.0.1:1", connections: 0, rooms: 0, startedAt, updatedAt: 0 });
}

test("the nodes bucket's TTL is the node timeout, and follows it when the configuration changes", async () => {
  const prefix = "ttl:";
  const admin = new NatsLink("admin", { url: nats.url });
  const first = new NatsMembership({ link: new NatsLink("m", { url: nats.url }), prefix, nodeTimeoutMs: 10_000 });
  const second = new NatsMembership({ link: new NatsLink("m", { url: nats.url }), prefix, nodeTimeoutMs: 4000 });
  try {
    await admin.start();
    const { manager } = await admin.jetstream();
    const stream = `KV_${natsNames(prefix).nodesBucket}`;
    await first.start(nodeInfo("n:1"));
    assert.equal((await manager.streams.info(stream)).config.max_age, 10_000 * 1_000_000);
    const kv = await admin.live().jetstream().views.kv(natsNames(prefix).nodesBucket, { bindOnly: true });
    assert.equal((await kv.get(encodeToken("n:1")))?.operation, "PUT", "one key per node, its id encoded");
    await first.close();
    await second.start(nodeInfo("n:2"));
    assert.equal((await manager.streams.info(stream)).config.max_age, 4000 * 1_000_000);
  } finally {
    await Promise.all([first.close(), second.close(), admin.close()]);
  }
});
