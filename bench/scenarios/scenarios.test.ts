// Every scenario's plan keeps the promises the generator and the report rely
// on: publishers are connections of the plan and members of what they publish
// to, fan-outs are the real member counts, connections and publishers are
// spread over the instances, and options that cannot make a plan are refused.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { findScenario, SCENARIOS } from "./index.js";
import { option, type Plan, placement, sourceAddress } from "./scenario.js";

/** Checks what holds for every plan, whatever its shape. */
function assertConsistent(plan: Plan): void {
  for (const conn of plan.conns) {
    assert.ok(Number.isInteger(conn.instance) && conn.instance >= 0 && conn.instance < plan.instances, "instance");
  }
  const publishing = new Set<number>();
  for (const publisher of plan.publishers) {
    const conn = plan.conns[publisher.conn];
    assert.ok(conn !== undefined, `publisher connection ${publisher.conn} is in the plan`);
    assert.ok(!publishing.has(publisher.conn), "one publisher per connection");
    publishing.add(publisher.conn);
    assert.ok(publisher.targets.length > 0);
    for (const target of publisher.targets) {
      if (publisher.kind === "room") {
        assert.ok(conn.rooms.includes(target), `publisher ${publisher.conn} is a member of ${target}`);
        const members: number = plan.conns.filter((c) => c.rooms.includes(target)).length;
        assert.equal(publisher.fanout, members, `fan-out of ${target}`);
      } else {
        assert.equal(plan.conns.filter((c) => c.user === target).length, publisher.fanout, `connections of ${target}`);
      }
    }
  }
  if (plan.publishers.length === 0) assert.equal(plan.rate, 0, "nobody publishes: rate 0");
  assert.equal(
    plan.needsTokens,
    plan.conns.some((c) => c.user !== undefined),
  );
}

/** How many of `items` each instance gets. */
function perInstance(plan: Plan, items: number[]): number[] {
  const counts = new Array<number>(plan.instances).fill(0);
  for (const conn of items) {
    const instance = plan.conns[conn]?.instance ?? -1;
    counts[instance] = (counts[instance] ?? 0) + 1;
  }
  return counts;
}

describe("scenarios", () => {
  for (const scenario of SCENARIOS) {
    test(`${scenario.name}: its defaults make a consistent plan`, () => {
      const plan = scenario.build({ ...scenario.defaults });
      assertConsistent(plan);
      assert.match(plan.summary, new RegExp(`^${placement(scenario.defaults)}, `));
      assert.equal(plan.rate, scenario.defaults.rate ?? 0);
      assert.equal(findScenario(scenario.name), scenario);
    });
  }

  test("findScenario knows the five scenarios and nothing else", () => {
    assert.deepEqual(
      SCENARIOS.map((s) => s.name),
      ["chat", "ticker", "sparse", "direct", "idle"],
    );
    assert.equal(findScenario("nope"), undefined);
  });

  test("chat: rooms split evenly over the instances, one publisher per room on alternating instances", () => {
    const chat = findScenario("chat");
    assert.ok(chat);
    const plan = chat.build({ ...chat.defaults, instances: 2, subscribers: 40, rooms: 4, publishers: 4 });
    assertConsistent(plan);
    assert.equal(plan.conns.length, 40);
    for (let r = 0; r < 4; r++) {
      const members = plan.conns.map((c, i) => (c.rooms.includes(`room-${r}`) ? i : -1)).filter((i) => i >= 0);
      assert.deepEqual(perInstance(plan, members), [5, 5], `room-${r} has half its members on each instance`);
    }
    assert.deepEqual(
      plan.publishers.map((p) => p.targets[0]),
      ["room-0", "room-1", "room-2", "room-3"],
    );
    assert.deepEqual(
      perInstance(
        plan,
        plan.publishers.map((p) => p.conn),
      ),
      [2, 2],
    );
    assert.equal(
      plan.summary,
      "2 instances, 40 subscribers in 4 rooms of 10, 4 publishers, 100-byte payloads, 500 publishes/s",
    );
  });

  test("chat and ticker refuse rooms that are not a positive integer, more rooms than subscribers, too many publishers", () => {
    const chat = findScenario("chat");
    assert.ok(chat);
    const build = (options: Record<string, number>) => chat.build({ ...chat.defaults, ...options });
    assert.throws(() => build({ rooms: 0 }), /--rooms must be a positive integer/);
    assert.throws(() => build({ rooms: 2.5 }), /--rooms must be a positive integer/);
    assert.throws(() => build({ subscribers: 10, rooms: 11 }), /--rooms \(11\) must not exceed --subscribers \(10\)/);
    assert.throws(() => build({ subscribers: 10, rooms: 5, publishers: 11 }), /too many publishers \(11\) for 5 rooms/);
    // At the edge, on one instance: every member of every room publishes.
    assertConsistent(build({ instances: 1, subscribers: 10, rooms: 5, publishers: 10 }));
  });

  test("ticker: per-socket message rate in the summary", () => {
    const ticker = findScenario("ticker");
    assert.ok(ticker);
    assert.match(ticker.build({ ...ticker.defaults, rate: 300, rooms: 2 }).summary, /\(150 messages\/s per socket\)$/);
  });

  test("sparse: each room's members all on one instance, its first member publishing", () => {
    const sparse = findScenario("sparse");
    assert.ok(sparse);
    const plan = sparse.build({ ...sparse.defaults, instances: 3, rooms: 6, members: 4 });
    assertConsistent(plan);
    assert.equal(plan.conns.length, 24);
    for (let r = 0; r < 6; r++) {
      const instances = new Set(plan.conns.filter((c) => c.rooms.includes(`room-${r}`)).map((c) => c.instance));
      assert.deepEqual([...instances], [r % 3]);
    }
    assert.throws(() => sparse.build({ ...sparse.defaults, rooms: 0 }), /--rooms must be a positive integer/);
  });

  test("direct: every user is sent to by exactly one sender, senders spread over the instances", () => {
    const direct = findScenario("direct");
    assert.ok(direct);
    const plan = direct.build({ ...direct.defaults, instances: 2, users: 10, senders: 4 });
    assertConsistent(plan);
    const targets = plan.publishers.flatMap((p) => p.targets).sort();
    assert.deepEqual(targets, Array.from({ length: 10 }, (_, u) => `u${u}`).sort());
    assert.deepEqual(
      perInstance(
        plan,
        plan.publishers.map((p) => p.conn),
      ),
      [2, 2],
    );
    for (const publisher of plan.publishers)
      assert.equal(plan.conns[publisher.conn]?.user, undefined, "senders are anonymous");
    // More senders than users: the extra ones have nobody to send to and are left out.
    assert.equal(direct.build({ ...direct.defaults, users: 3, senders: 5 }).publishers.length, 3);
  });

  test("idle: no publishers, rate 0; past 25,000 connections they are spread over 127.0.0.x", () => {
    const idle = findScenario("idle");
    assert.ok(idle);
    const small = idle.build({ ...idle.defaults, connections: 10, rooms: 0 });
    assert.deepEqual([small.publishers, small.rate], [[], 0]);
    assert.ok(small.conns.every((c) => c.rooms.length === 0 && c.localAddress === undefined));
    assert.equal(small.summary, "2 instances, 10 idle connections");
    const large = idle.build({ ...idle.defaults, connections: 30_000 });
    assert.equal(large.conns[0]?.localAddress, "127.0.0.1");
    assert.equal(large.conns[9_999]?.localAddress, "127.0.0.1");
    assert.equal(large.conns[10_000]?.localAddress, "127.0.0.2");
    assert.equal(large.conns[29_999]?.localAddress, "127.0.0.3");
  });

  test("sourceAddress, placement and option", () => {
    assert.equal(sourceAddress(24_999, 25_000), undefined);
    assert.equal(sourceAddress(0, 25_001), "127.0.0.1");
    assert.equal(placement({ instances: 1 }), "1 instance");
    assert.equal(placement({ instances: 3 }), "3 instances");
    assert.equal(placement({ instances: 3, urls: 1 }), "1 URL");
    assert.equal(placement({ instances: 3, urls: 2 }), "2 URLs");
    assert.equal(option({ rate: 0 }, "rate"), 0);
    assert.throws(() => option({}, "rate"), /missing option --rate/);
  });
});
