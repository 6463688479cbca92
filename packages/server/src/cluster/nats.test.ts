// Cluster membership through a real nats-server (JetStream KV): nodes see each
// other, a node that closes leaves at once, a node that goes silent expires
// after the timeout, and a restart of NATS does not lose the node for long.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { ProtocolError } from "crier-protocol";
import { type NatsProcess, startNats } from "../../../../test/support/nats.js";
import { freePort } from "../../../../test/support/redis.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { encodeToken, NatsLink } from "../nats/connection.js";
import type { NodeInfo } from "./membership.js";
import { NatsMembership, type NatsMembershipOptions, nodesBucket } from "./nats.js";

/** A membership whose heartbeat the test can stop, leaving its entry behind as a crashed node would. */
class SilencedMembership extends NatsMembership {
  silence(): void {
    this.stopHeartbeat();
  }
}

function nodeInfo(id: string, connections = 0): () => NodeInfo {
  const startedAt = Date.now();
  return () => ({ id, address: `10.0.0.1:${id.length}`, connections, rooms: 1, startedAt, updatedAt: 0 });
}

const ids = (nodes: NodeInfo[]): string[] => nodes.map((n) => n.id);

test("NatsMembership.start rejects naming the URL when NATS is not there", async () => {
  const port = await freePort();
  const membership = new NatsMembership({ link: new NatsLink("membership", { url: `nats://127.0.0.1:${port}` }) });
  await assert.rejects(membership.start(nodeInfo("lonely")), new RegExp(`NATS at nats://127\\.0\\.0\\.1:${port}`));
  await membership.close();
});

describe("NatsMembership against a real nats-server", () => {
  let nats: NatsProcess;
  let clusterSeq = 0;
  const open: Array<{ close(): Promise<void> }> = [];

  before(async () => {
    nats = await startNats();
  });
  after(async () => {
    await nats.stop();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((m) => m.close()));
  });

  /** A fresh cluster (its own prefix, so its own bucket) and a way to add members. */
  function cluster(): { prefix: string; options: () => NatsMembershipOptions; member(): NatsMembership } {
    clusterSeq += 1;
    const prefix = `test${clusterSeq}:`;
    const options = (): NatsMembershipOptions => ({
      link: new NatsLink("membership", { url: nats.url }),
      prefix,
      heartbeatMs: 50,
      nodeTimeoutMs: 500,
    });
    return {
      prefix,
      options,
      member() {
        const m = new NatsMembership(options());
        open.push(m);
        return m;
      },
    };
  }

  async function adminBucket(prefix: string) {
    const link = new NatsLink("admin", { url: nats.url });
    open.push(link);
    await link.start();
    return nodesBucket(link, prefix, 500);
  }

  test("two nodes see each other, with their current counts", async () => {
    const c = cluster();
    const a = c.member();
    const b = c.member();
    let connectionsOfA = 1;
    await a.start(() => ({ ...nodeInfo("node-a")(), connections: connectionsOfA }));
    await b.start(nodeInfo("node-b", 7));
    assert.deepEqual(ids(await a.nodes()), ["node-a", "node-b"]);
    assert.deepEqual(ids(await b.nodes()), ["node-a", "node-b"]);
    assert.equal((await b.nodes()).find((n) => n.id === "node-a")?.address, "10.0.0.1:6");
    connectionsOfA = 42;
    await waitUntil("b sees a's new connection count", async () => {
      const seen = (await b.nodes()).find((n) => n.id === "node-a");
      return seen?.connections === 42;
    });
  });

  test("a node that closes disappears at once", async () => {
    const c = cluster();
    const a = c.member();
    const b = c.member();
    await a.start(nodeInfo("node-a"));
    await b.start(nodeInfo("node:b@x"));
    assert.deepEqual(ids(await a.nodes()), ["node-a", "node:b@x"]);
    await b.close();
    await b.close();
    assert.deepEqual(ids(await a.nodes()), ["node-a"]);
  });

  test("a node that stops heartbeating drops out after the node timeout", async () => {
    const c = cluster();
    const a = c.member();
    const b = new SilencedMembership(c.options());
    open.push(b);
    await a.start(nodeInfo("node-a"));
    await b.start(nodeInfo("node-b"));
    b.silence();
    const silencedAt = Date.now();
    assert.deepEqual(ids(await a.nodes()), ["node-a", "node-b"]);
    await waitUntil("node-b expires", async () => !ids(await a.nodes()).includes("node-b"), 5000);
    const elapsed = Date.now() - silencedAt;
    // The last heartbeat was at most heartbeatMs (50) before silencing.
    assert.ok(elapsed >= 400, `node-b expired after only ${elapsed} ms`);
    assert.deepEqual(ids(await a.nodes()), ["node-a"]);
  });

  test("a node whose entry vanished announces itself again and tells its rejoin listeners", async () => {
    const c = cluster();
    const a = c.member();
    let rejoins = 0;
    a.onRejoin(() => {
      rejoins += 1;
    });
    await a.start(nodeInfo("node-a"));
    const first = (await a.nodes())[0]?.updatedAt ?? 0;
    await waitUntil("a heartbeat after the first", async () => ((await a.nodes())[0]?.updatedAt ?? 0) > first);
    assert.equal(rejoins, 0, "heartbeats that find the entry in place are not rejoins");
    const bucket = await adminBucket(c.prefix);
    await bucket.purge(encodeToken("node-a"));
    await waitUntil("the rejoin listener is called", () => rejoins > 0);
    assert.equal(rejoins, 1);
    assert.deepEqual(ids(await a.nodes()), ["node-a"]);
  });

  test("a malformed entry is ignored, not fatal", async () => {
    const c = cluster();
    const a = c.member();
    await a.start(nodeInfo("node-a"));
    const bucket = await adminBucket(c.prefix);
    await bucket.put("junk", "not json");
    assert.deepEqual(ids(await a.nodes()), ["node-a"]);
  });
});

describe("NatsMembership across a NATS restart", () => {
  for (const wipe of [false, true]) {
    test(`nodes() is unavailable while NATS is down, and lists this node once it is back (store ${wipe ? "lost" : "kept"})`, async () => {
      const nats = await startNats();
      // A long heartbeat: only the announce-on-reconnect can list the node promptly.
      const membership = new NatsMembership({
        link: new NatsLink("membership", { url: nats.url }),
        prefix: "restart:",
        heartbeatMs: 60_000,
        nodeTimeoutMs: 120_000,
      });
      try {
        await membership.start(nodeInfo("phoenix"));
        assert.deepEqual(ids(await membership.nodes()), ["phoenix"]);
        await nats.kill("SIGKILL");
        await waitUntil("the connection is seen lost", () =>
          membership.nodes().then(
            () => false,
            (error: unknown) => error instanceof ProtocolError && error.code === "unavailable",
          ),
        );
        await nats.restart({ wipe });
        await waitUntil(
          "the node is listed again after the restart",
          async () => ids(await membership.nodes().catch(() => [])).includes("phoenix"),
          10_000,
        );
      } finally {
        await membership.close();
        await nats.stop();
      }
    });
  }
});
