// The Node publisher: a backend publishes straight into the engine, without
// HTTP, and crier instances deliver it like their own publications (with
// offsets in rooms with history, from the same atomic append), on every engine
// of test/support/engines.ts.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { CrierPublisher } from "../../packages/server/src/index.js";
import { type ConfigFile, type CrierInstance, startCrier, writeConfig } from "../support/crier.js";
import { ENGINES, type Engine } from "../support/engines.js";
import { JWT_SECRET, token } from "../support/tokens.js";
import { TestClient } from "../support/ws-client.js";

const NAMESPACES = { feed: { history: { size: 50, ttl: "10m" } } };

for (const kind of ENGINES)
  describe(`CrierPublisher on ${kind.name}`, () => {
    let config: ConfigFile | undefined;
    let engine: Engine | undefined;
    let instances: CrierInstance[];
    let publisher: CrierPublisher;

    before(async () => {
      config = await writeConfig({ jwt: { secret: JWT_SECRET }, allowAnonymous: true, namespaces: NAMESPACES });
      const file = config.path;
      const started = await kind.start();
      engine = started;
      instances = await Promise.all(
        ["p1", "p2"].map((id) => startCrier({ args: [...started.args, "--node-id", id, "--config", file] })),
      );
      publisher = await CrierPublisher.connect({ ...started.config, namespaces: NAMESPACES });
    });

    after(async () => {
      await publisher?.close();
      await Promise.all((instances ?? []).map((instance) => instance.stop()));
      await engine?.stop();
      await config?.remove();
    });

    test("publishes to a room on every instance", async () => {
      const clients = await Promise.all(instances.map((instance) => TestClient.connect(instance.url)));
      for (const client of clients) await client.call({ op: "subscribe", room: "lobby" });
      assert.deepEqual(await publisher.publish("lobby", { hello: "from the backend" }), {});
      for (const client of clients) {
        assert.deepEqual(await client.next("message"), {
          op: "message",
          room: "lobby",
          data: { hello: "from the backend" },
        });
        client.close();
      }
    });

    test("rooms with history get offsets from the same sequence as the instances' own publishes", async () => {
      const client = await TestClient.connect(instances[0]?.url ?? "");
      const subscribed = await client.call({ op: "subscribe", room: "feed:1" });
      assert.equal(subscribed.op, "subscribed");
      const first = await publisher.publish("feed:1", "a");
      assert.equal(first.offset, 1);
      assert.equal(first.epoch, subscribed.op === "subscribed" ? subscribed.epoch : "");
      const viaHttp = await fetch(`${instances[1]?.httpUrl}/api/publish`, {
        method: "POST",
        headers: { Authorization: `Bearer ${instances[1]?.apiKey}` },
        body: JSON.stringify({ room: "feed:1", data: "b" }),
      });
      assert.equal(((await viaHttp.json()) as { offset: number }).offset, 2);
      assert.equal((await publisher.publish("feed:1", "c")).offset, 3);
      const messages = [await client.next("message"), await client.next("message"), await client.next("message")];
      assert.deepEqual(
        messages.map((m) => (m.op === "message" ? [m.offset, m.data] : [])),
        [
          [1, "a"],
          [2, "b"],
          [3, "c"],
        ],
      );
      client.close();
    });

    test("its publications are in the room's history: a client that missed them recovers them on another instance", async () => {
      // A publisher that knows no namespace (so no history sizes) must not cut the instances' history short.
      const unaware = await CrierPublisher.connect({ ...engine?.config });
      await unaware.close();
      const first = await publisher.publish("feed:2", { n: 1 });
      await publisher.publish("feed:2", { n: 2 });
      await publisher.publish("feed:2", { n: 3 });
      const client = await TestClient.connect(instances[1]?.url ?? "");
      const since = { offset: first.offset, epoch: first.epoch };
      const subscribed = await client.call({ op: "subscribe", room: "feed:2", since });
      assert.deepEqual(subscribed, {
        op: "subscribed",
        id: subscribed.op === "subscribed" ? subscribed.id : undefined,
        room: "feed:2",
        offset: 3,
        epoch: first.epoch,
        recovered: true,
      });
      assert.deepEqual(
        [await client.next("message"), await client.next("message")],
        [
          { op: "message", room: "feed:2", data: { n: 2 }, offset: 2 },
          { op: "message", room: "feed:2", data: { n: 3 }, offset: 3 },
        ],
      );
      client.close();
    });

    test("sends to a user's connections on every instance", async () => {
      const jwt = await token({ sub: "backend-target" });
      const clients = await Promise.all(instances.map((instance) => TestClient.connect(instance.url, { token: jwt })));
      await publisher.send("backend-target", { ping: true });
      for (const client of clients) {
        assert.deepEqual(await client.next("direct"), { op: "direct", data: { ping: true } });
        client.close();
      }
    });

    test("refuses bad input with clear errors", async () => {
      await assert.rejects(publisher.publish("bad room", 1), /invalid room name/);
      await assert.rejects(publisher.send("", 1), /user must not be empty/);
    });
  });

test("CrierPublisher.connect without an engine says which settings it needs", async () => {
  await assert.rejects(CrierPublisher.connect({}), /give `redis` or `nats`/);
});
