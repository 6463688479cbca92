// Two crier instances and Redis behind a real nginx configured exactly as
// docs/deployment.md says: WebSockets and the HTTP API work through it, and a
// client whose instance dies reconnects through nginx to the other one.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { WebSocket } from "ws";
import { CrierClient, type MessagePush } from "../../packages/client/src/index.js";
import { type CrierInstance, startCrier, TEST_API_KEY } from "../support/crier.js";
import { type NginxProcess, startNginx } from "../support/nginx.js";
import { type RedisProcess, startRedis } from "../support/redis.js";
import { waitUntil } from "../support/wait.js";

describe("behind nginx (docs/deployment.md)", () => {
  let redis: RedisProcess;
  let instances: CrierInstance[];
  let nginx: NginxProcess;

  before(async () => {
    redis = await startRedis();
    instances = await Promise.all(
      ["a", "b"].map((id) => startCrier({ args: ["--redis", redis.url, "--node-id", id, "--allow-anonymous"] })),
    );
    nginx = await startNginx(instances.map((instance) => instance.port));
  });

  after(async () => {
    await nginx?.stop();
    await Promise.all((instances ?? []).map((instance) => instance.stop().catch(() => undefined)));
    await redis?.stop();
  });

  test("WebSockets and the HTTP API work through the proxy, across both instances", async () => {
    const clients = Array.from({ length: 4 }, () => new CrierClient(nginx.wsUrl, { WebSocket }));
    try {
      const nodes = new Set<string>();
      const received: MessagePush[][] = clients.map(() => []);
      for (const [i, client] of clients.entries()) {
        nodes.add((await client.connect()).node);
        await client.subscribe("proxied", (message) => received[i]?.push(message)).ready;
      }
      assert.deepEqual([...nodes].sort(), ["a", "b"], "least_conn spread the clients over both instances");
      const response = await fetch(`${nginx.httpUrl}/api/publish`, {
        method: "POST",
        headers: { Authorization: `Bearer ${TEST_API_KEY}`, "Content-Type": "application/json" },
        body: JSON.stringify({ room: "proxied", data: "through nginx" }),
      });
      assert.equal(response.status, 200);
      await waitUntil("every client received the publication", () => received.every((list) => list.length === 1));
      for (const list of received) {
        assert.deepEqual(
          list.map((message) => [message.room, message.data]),
          [["proxied", "through nginx"]],
        );
      }
      assert.equal((await fetch(`${nginx.httpUrl}/readyz`)).status, 200);
    } finally {
      for (const client of clients) client.close();
    }
  });

  test("when an instance dies, its clients reconnect through nginx to the other and keep receiving", async () => {
    const client = new CrierClient(nginx.wsUrl, { WebSocket, minReconnectDelayMs: 50, maxReconnectDelayMs: 300 });
    const received: unknown[] = [];
    try {
      const first = (await client.connect()).node;
      const subscription = client.subscribe("survivor", (message) => received.push(message.data));
      await subscription.ready;
      const victim = instances.find((instance) => instance.nodeId === first);
      assert.ok(victim !== undefined);
      const reconnected = new Promise<{ node: string }>((resolve) => client.once("connected", resolve));
      const resubscribed = new Promise((resolve) => subscription.once("resubscribed", resolve));
      await victim.kill("SIGKILL");
      const second = (await reconnected).node;
      await resubscribed;
      assert.notEqual(second, first);
      const response = await fetch(`${nginx.httpUrl}/api/publish`, {
        method: "POST",
        headers: { Authorization: `Bearer ${TEST_API_KEY}` },
        body: JSON.stringify({ room: "survivor", data: "after failover" }),
      });
      assert.equal(response.status, 200);
      await waitUntil("the message after failover arrives", () => received.length === 1);
      assert.deepEqual(received, ["after failover"]);
    } finally {
      client.close();
    }
  });
});
