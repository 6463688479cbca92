// GET /metrics of one node: every metric registered, typed and labelled with
// the node, gauges read at scrape time, and counters that move by exactly what
// their code path did (and not again on a second scrape).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startNode, type TestNode } from "../../../test/support/node.js";
import { JWT_SECRET, token } from "../../../test/support/tokens.js";
import { waitUntil } from "../../../test/support/wait.js";

interface Scrape {
  text: string;
  /** A sample's value: the first line of `name` whose labels include `label`; 0 when absent. */
  value(name: string, label?: string): number;
}

async function scrape(server: TestNode): Promise<Scrape> {
  const response = await fetch(`${server.httpUrl}/metrics`);
  assert.equal(response.status, 200);
  const text = await response.text();
  return {
    text,
    value(name, label = "") {
      const line = text
        .split("\n")
        .find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(label));
      return line === undefined ? 0 : Number(line.split(" ").at(-1));
    },
  };
}

const COUNTERS = [
  "crier_publications_total",
  "crier_deliveries_total",
  "crier_directs_total",
  "crier_repaired_total",
  "crier_rooms_lost_total",
  "crier_broker_published_total",
  "crier_broker_publish_failed_total",
  "crier_broker_received_total",
  "crier_broker_recoveries_total",
  "crier_disconnects_total",
];
const GAUGES = ["crier_connections", "crier_rooms", "crier_users", "crier_broker_channels", "crier_ready"];

describe("metrics", () => {
  let server: TestNode;
  before(async () => {
    server = await startNode({ nodeId: "metered-node", jwt: { secret: JWT_SECRET } });
  });
  after(() => server.close());

  test("every crier metric is registered with help and type, and every sample carries the node label", async () => {
    const { text } = await scrape(server);
    for (const name of COUNTERS) {
      assert.match(text, new RegExp(`^# HELP ${name} \\S`, "m"), `${name} has help`);
      assert.match(text, new RegExp(`^# TYPE ${name} counter$`, "m"), `${name} is a counter`);
    }
    for (const name of GAUGES) {
      assert.match(text, new RegExp(`^# HELP ${name} \\S`, "m"), `${name} has help`);
      assert.match(text, new RegExp(`^# TYPE ${name} gauge$`, "m"), `${name} is a gauge`);
    }
    // Default process metrics come under crier's own prefix, once.
    assert.match(text, /^crier_process_resident_memory_bytes\{/m);
    assert.match(text, /^crier_nodejs_heap_size_used_bytes\{/m);
    assert.doesNotMatch(text, /crier_process_process_|crier_process_nodejs_/);
    const samples = text.split("\n").filter((line) => line.startsWith("crier_"));
    assert.ok(samples.length > COUNTERS.length);
    for (const line of samples) assert.match(line, /node="metered-node"/, line);
  });

  test("gauges are read at scrape time: connections, rooms, users, channels, ready", async () => {
    const start = await scrape(server);
    assert.equal(start.value("crier_ready"), 1);
    const ann = await server.client({ token: await token({ sub: "metrics-ann" }) });
    const bob = await server.client({ token: await token({ sub: "metrics-bob" }) });
    await ann.call({ op: "subscribe", room: "gauged:1" });
    await ann.call({ op: "subscribe", room: "gauged:2" });
    await bob.call({ op: "subscribe", room: "gauged:2" });
    const during = await scrape(server);
    assert.equal(during.value("crier_connections") - start.value("crier_connections"), 2);
    assert.equal(during.value("crier_rooms") - start.value("crier_rooms"), 2);
    assert.equal(during.value("crier_users") - start.value("crier_users"), 2);
    // A channel per room and one per user.
    assert.equal(during.value("crier_broker_channels") - start.value("crier_broker_channels"), 4);
    ann.close();
    bob.close();
    await waitUntil("both connections are gone", async () => {
      const now = await scrape(server);
      return now.value("crier_connections") === start.value("crier_connections");
    });
    const end = await scrape(server);
    assert.equal(end.value("crier_rooms"), start.value("crier_rooms"));
    assert.equal(end.value("crier_users"), start.value("crier_users"));
    assert.equal(end.value("crier_broker_channels"), start.value("crier_broker_channels"));
  });

  test("counters move by what their code path did: a publication, its deliveries, directs and disconnects", async () => {
    const a = await server.client({ token: await token({ sub: "metrics-cat" }) });
    const b = await server.client({ token: await token({ sub: "metrics-cat" }) });
    await a.call({ op: "subscribe", room: "counted" });
    await b.call({ op: "subscribe", room: "counted" });
    // One of each first, so the counters are not at zero: growth must be counted from there.
    await server.api("/api/publish", { room: "counted", data: 0 });
    await server.api("/api/send", { user: "metrics-cat", data: "warm-up" });
    for (const client of [a, b]) await client.seen((f) => f.op === "direct" && f.data === "warm-up", "the warm-up");
    const before = await scrape(server);
    assert.ok(before.value("crier_deliveries_total") > 0 && before.value("crier_directs_total") > 0);
    assert.equal((await server.api("/api/publish", { room: "counted", data: 1 })).status, 200);
    for (const client of [a, b]) await client.seen((f) => f.op === "message" && f.data === 1, "the publication");
    assert.equal((await server.api("/api/send", { user: "metrics-cat", data: "hi" })).status, 200);
    for (const client of [a, b]) await client.seen((f) => f.op === "direct" && f.data === "hi", "the direct message");
    a.sendRaw("{not json");
    assert.equal((await a.waitClosed()).code, 4002);
    await waitUntil("the 4002 close is counted", async () => {
      const now = await scrape(server);
      return (
        now.value("crier_disconnects_total", 'code="4002"') > before.value("crier_disconnects_total", 'code="4002"')
      );
    });

    const after = await scrape(server);
    const grew = (name: string, label?: string): number => after.value(name, label) - before.value(name, label);
    assert.equal(grew("crier_publications_total"), 1);
    assert.equal(grew("crier_deliveries_total"), 2, "one delivery per member");
    assert.equal(grew("crier_directs_total"), 2, "one per connection of the user");
    assert.equal(grew("crier_broker_published_total"), 2, "the publication and the direct message");
    assert.equal(grew("crier_broker_received_total"), 2);
    assert.equal(grew("crier_broker_publish_failed_total"), 0);
    assert.equal(grew("crier_disconnects_total", 'code="4002"'), 1);
    // A counter mirrors a running total: scraping again adds nothing.
    const again = await scrape(server);
    for (const name of ["crier_publications_total", "crier_deliveries_total", "crier_directs_total"]) {
      assert.equal(again.value(name), after.value(name), `${name} on a second scrape`);
    }
    b.close();
  });
});
