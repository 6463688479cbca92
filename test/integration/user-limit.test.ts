// limits.maxConnectionsPerUser across a cluster (docs/security.md): two real
// `crier serve` processes share one engine; one user's connections are counted
// cluster-wide, so the one over the limit is refused wherever it lands, and
// the connections of an instance killed with SIGKILL stop counting once it
// drops out of the membership.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type ConfigFile, type CrierInstance, startCrier, writeConfig } from "../support/crier.js";
import { ENGINES, type Engine } from "../support/engines.js";
import { JWT_SECRET, token } from "../support/tokens.js";
import { waitUntil } from "../support/wait.js";
import { TestClient } from "../support/ws-client.js";

const HEARTBEAT_S = 0.2;
const NODE_TIMEOUT_S = 1;
const MAX = 2;

for (const kind of ENGINES) {
  describe(`per-user connection limit across instances on ${kind.name}`, { timeout: 60_000 }, () => {
    let engine: Engine;
    let config: ConfigFile;
    const instances: CrierInstance[] = [];
    const clients: TestClient[] = [];

    before(async () => {
      config = await writeConfig({
        cluster: { heartbeat: HEARTBEAT_S, nodeTimeout: NODE_TIMEOUT_S },
        limits: { maxConnectionsPerUser: MAX },
      });
      engine = await kind.start();
      const start = (id: string): Promise<CrierInstance> =>
        startCrier({ args: ["--config", config.path, ...engine.args, "--node-id", id, "--jwt-secret", JWT_SECRET] });
      instances.push(...(await Promise.all([start("a"), start("b")])));
    });

    after(async () => {
      for (const client of clients) client.ws.terminate();
      await Promise.all(instances.map((instance) => instance.kill("SIGKILL")));
      await engine?.stop();
      await config?.remove();
    });

    /** Opens a connection to `instance` and sends `connect` as `user`: the reply, and the client. */
    async function connect(
      instance: CrierInstance,
      user: string,
    ): Promise<{ client: TestClient; op: string; code?: string }> {
      const client = await TestClient.open(instance.url);
      clients.push(client);
      client.ws.on("message", (data) => {
        if (String(data) === '{"op":"ping"}') client.send({ op: "pong" });
      });
      const reply = await client.call({ op: "connect", token: await token({ sub: user }) });
      return { client, op: reply.op, ...(reply.op === "error" ? { code: reply.code } : {}) };
    }

    test("the connection over the limit is refused on any instance, and a killed instance's stop counting", async () => {
      const [a, b] = instances;
      if (a === undefined || b === undefined) throw new Error("the instances did not start");
      assert.equal((await connect(a, "ivy")).op, "connected");
      assert.equal((await connect(a, "ivy")).op, "connected");
      const refused = await connect(b, "ivy");
      assert.deepEqual({ op: refused.op, code: refused.code }, { op: "error", code: "rate_limited" });
      assert.equal((await refused.client.waitClosed()).code, 4508);
      assert.equal((await connect(b, "other")).op, "connected", "other users are counted apart");

      await a.kill("SIGKILL");
      await waitUntil(
        "b admits ivy once a's connections stop counting",
        async () => (await connect(b, "ivy")).op === "connected",
        NODE_TIMEOUT_S * 1000 + 10_000,
      );
      assert.equal((await connect(b, "ivy")).op, "connected", "two on b now");
      const over = await connect(b, "ivy");
      assert.equal(over.code, "rate_limited", "and the limit holds again");
    });
  });
}
