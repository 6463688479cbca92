// The SDK's member list and counts against a real crier process:
// subscription.members follows joins and leaves, presenceStats() counts, and
// after the server restarts under the clients the list is read anew, with
// nobody from before the restart left in it.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { WebSocket } from "ws";
import { CrierClient, type Subscription } from "../../packages/client/src/index.js";
import { type ConfigFile, type CrierInstance, startCrier, writeConfig } from "../support/crier.js";
import { JWT_SECRET, token } from "../support/tokens.js";

const ROOM = "team:members";

/** Resolves once the subscription's member list is exactly `clients` (by client id), on its events. */
function membersBecome(subscription: Subscription, clients: () => string[], what: string): Promise<void> {
  const matches = (): boolean => {
    const want = clients().sort().join(",");
    return [...subscription.members.keys()].sort().join(",") === want;
  };
  if (matches()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`members never became ${what}: ${[...subscription.members.keys()].join(",")}`));
    }, 10_000);
    const off = subscription.on("members", () => {
      if (!matches()) return;
      clearTimeout(timer);
      off();
      resolve();
    });
  });
}

describe("SDK member list against a real server", () => {
  let config: ConfigFile | undefined;
  let server: CrierInstance;
  const clients: CrierClient[] = [];

  async function open(user: string): Promise<CrierClient> {
    const client = new CrierClient(server.url, {
      WebSocket,
      token: await token({ sub: user, info: { name: user } }),
      minReconnectDelayMs: 20,
      maxReconnectDelayMs: 200,
    });
    clients.push(client);
    await client.connect();
    return client;
  }

  before(async () => {
    config = await writeConfig({
      jwt: { secret: JWT_SECRET },
      namespaces: { team: { presence: true, joinLeave: true } },
    });
    server = await startCrier({ args: ["--config", config.path] });
  });

  after(async () => {
    for (const client of clients) client.close();
    await server.stop();
    await config?.remove();
  });

  test("members follow joins and leaves, presenceStats counts, and a reconnect reads the list anew", async () => {
    const ann = await open("ann");
    const watched = ann.subscribe(ROOM, () => {}, { members: true });
    await membersBecome(watched, () => [ann.info?.client ?? "?"], "ann alone");
    assert.deepEqual(watched.members.get(ann.info?.client ?? ""), {
      user: "ann",
      client: ann.info?.client,
      info: { name: "ann" },
    });

    const bob = await open("bob");
    const bobs = bob.subscribe(ROOM, () => {});
    await bobs.ready;
    const both = (): string[] => [ann.info?.client ?? "?", bob.info?.client ?? "?"];
    await membersBecome(watched, both, "ann and bob");
    assert.deepEqual(await ann.presenceStats(ROOM), { clients: 2, users: 2 });
    await bobs.unsubscribe();
    await membersBecome(watched, () => [ann.info?.client ?? "?"], "ann alone after bob left");
    assert.deepEqual(await bob.presenceStats(ROOM), { clients: 1, users: 1 });
    bob.subscribe(ROOM, () => {});
    await membersBecome(watched, both, "ann and bob again");

    const before = both();
    const reconnected = Promise.all(
      [ann, bob].map((client) => new Promise((resolve) => client.once("connected", resolve))),
    );
    await server.restart();
    await reconnected;
    // New connections, new client ids: the list read after the resubscribe has only those.
    await membersBecome(watched, both, "ann and bob with their new client ids");
    for (const old of before) assert.equal(watched.members.has(old), false, `${old} is gone`);
    assert.deepEqual(await ann.presenceStats(ROOM), { clients: 2, users: 2 });
  });
});
