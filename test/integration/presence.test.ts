// "Who is in a room, cluster-wide": real `crier serve` processes over each
// engine (test/support/engines.ts: a real redis-server, a real Redis Cluster,
// a real nats-server). Members connected to different instances are listed
// together from any instance, every subscriber hears of joins and leaves
// wherever they happen, a clean shutdown takes its members out at once (with
// their leaves), a crashed instance's members drop off the list once it drops
// out of the cluster, after the node timeout, with their leaves sent by a
// survivor, and an engine that restarts empty is refilled (presence-crash.test.ts
// has more on crashes).

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import type { Member, ServerFrame } from "crier-protocol";
import { api, type CrierInstance, startCrier } from "../support/crier.js";
import { ENGINES, type Engine, type EngineKind } from "../support/engines.js";
import { JWT_SECRET, token } from "../support/tokens.js";
import { waitUntil } from "../support/wait.js";
import { TestClient } from "../support/ws-client.js";

/** Short membership timings, so a killed instance drops out quickly. */
const HEARTBEAT_S = 0.2;
const NODE_TIMEOUT_S = 1;

let engine: Engine;
let dir = "";
let config = "";
let a: CrierInstance;
let b: CrierInstance;
const instances: CrierInstance[] = [];
let clients: TestClient[] = [];

async function start(id: string): Promise<CrierInstance> {
  const instance = await startCrier({
    args: ["--config", config, ...engine.args, "--node-id", id, "--jwt-secret", JWT_SECRET],
  });
  instances.push(instance);
  return instance;
}

/** Connects to `instance` as `user`, answering pings as real clients do; returns the client and its id. */
async function connectAs(
  instance: CrierInstance,
  user: string,
  info?: Record<string, unknown>,
): Promise<{ client: TestClient; id: string }> {
  const client = await TestClient.open(instance.url);
  clients.push(client);
  client.ws.on("message", (data) => {
    if (String(data) === '{"op":"ping"}') client.send({ op: "pong" });
  });
  const connect: Record<string, unknown> = { op: "connect", token: await token({ sub: user, info: { name: user } }) };
  if (info !== undefined) connect.info = info;
  const reply = await client.call(connect);
  if (reply.op !== "connected") throw new Error(`connect failed: ${JSON.stringify(reply)}`);
  return { client, id: reply.client };
}

async function subscribe(client: TestClient, room: string): Promise<void> {
  const reply = await client.call({ op: "subscribe", room });
  assert.equal(reply.op, "subscribed", `subscribe to ${room}: ${JSON.stringify(reply)}`);
}

async function listed(instance: CrierInstance, room: string): Promise<Member[]> {
  const reply = await api(instance, `/api/presence?room=${encodeURIComponent(room)}`);
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  return (reply.body as { members: Member[] }).members;
}

const usersOf = (members: Member[]): string[] => members.map((m) => m.user);

function isPush(op: "join" | "leave", room: string, client: string): (frame: ServerFrame) => boolean {
  return (frame) => frame.op === op && frame.room === room && frame.member.client === client;
}

function presenceScenarios(kind: EngineKind): void {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "crier-presence-test-"));
    config = join(dir, "crier.json");
    await writeFile(
      config,
      JSON.stringify({
        cluster: { heartbeat: HEARTBEAT_S, nodeTimeout: NODE_TIMEOUT_S },
        namespaces: { chat: { presence: true, joinLeave: true } },
      }),
    );
    engine = await kind.start();
    [a, b] = await Promise.all([start("a"), start("b")]);
  });

  afterEach(() => {
    for (const client of clients) client.ws.terminate();
    clients = [];
  });

  after(async () => {
    for (const client of clients) client.ws.terminate();
    await Promise.all(instances.splice(0).map((instance) => instance.kill("SIGKILL")));
    await engine?.stop();
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  describe(`presence and join/leave across instances over ${kind.name}`, { timeout: 60_000 }, () => {
    test("members on A, B and C are listed from any instance, and each join and leave reaches every other subscriber", async () => {
      const c = await start("c");
      const room = "chat:across";
      const ann = await connectAs(a, "ann");
      await subscribe(ann.client, room);
      const bob = await connectAs(b, "bob");
      await subscribe(bob.client, room);
      const bobJoin = await ann.client.seen(isPush("join", room, bob.id), "bob's join (B) at ann (A)");
      assert.deepEqual(bobJoin, { op: "join", room, member: { user: "bob", client: bob.id, info: { name: "bob" } } });

      const cat = await connectAs(c, "cat");
      await subscribe(cat.client, room);
      for (const { client } of [ann, bob]) await client.seen(isPush("join", room, cat.id), "cat's join (C)");

      const everyone: Member[] = [
        { user: "ann", client: ann.id, info: { name: "ann" } },
        { user: "bob", client: bob.id, info: { name: "bob" } },
        { user: "cat", client: cat.id, info: { name: "cat" } },
      ];
      for (const instance of [a, b, c]) assert.deepEqual(await listed(instance, room), everyone);
      const op = await bob.client.call({ op: "presence", room });
      assert.deepEqual(op, { op: "presence", id: op.op === "presence" ? op.id : 0, room, members: everyone });

      assert.equal((await bob.client.call({ op: "unsubscribe", room })).op, "ok");
      for (const { client } of [ann, cat]) await client.seen(isPush("leave", room, bob.id), "bob's leave");
      assert.deepEqual(usersOf(await listed(c, room)), ["ann", "cat"], "listed no more once his leave is heard");

      cat.client.close();
      await ann.client.seen(isPush("leave", room, cat.id), "cat's leave after she disconnected from C");
      assert.deepEqual(usersOf(await listed(b, room)), ["ann"]);
      // Nobody is told of their own join.
      assert.equal(ann.client.frames.filter(isPush("join", room, ann.id)).length, 0);
      await c.stop();
    });

    test("a clean shutdown (SIGTERM) takes its members off the list at once and announces their leaves", async () => {
      const d = await start("d");
      const room = "chat:shutdown";
      const ann = await connectAs(a, "ann");
      await subscribe(ann.client, room);
      const dora = await connectAs(d, "dora");
      await subscribe(dora.client, room);
      await ann.client.seen(isPush("join", room, dora.id), "dora's join");
      assert.deepEqual(usersOf(await listed(a, room)), ["ann", "dora"]);

      const status = await d.stop();
      assert.equal(status.code, 0, d.output());
      await ann.client.seen(isPush("leave", room, dora.id), "dora's leave from the instance shutting down");
      // No node timeout to wait for: her entry was removed before the leave went out.
      assert.deepEqual(usersOf(await listed(a, room)), ["ann"]);
    });

    test("a killed instance's members drop off the list after the node timeout, and are removed from the engine", async () => {
      const e = await start("e");
      const room = "chat:crash";
      const ann = await connectAs(a, "ann");
      await subscribe(ann.client, room);
      const eve = await connectAs(e, "eve");
      await subscribe(eve.client, room);
      await ann.client.seen(isPush("join", room, eve.id), "eve's join");
      assert.deepEqual(usersOf(await listed(b, room)), ["ann", "eve"]);

      await e.kill("SIGKILL");
      const killedAt = Date.now();
      await waitUntil("eve is off the list", async () => !usersOf(await listed(b, room)).includes("eve"), 10_000);
      const elapsed = Date.now() - killedAt;
      // E's last heartbeat was at most HEARTBEAT_S before the kill: its entry outlived it by about the node timeout.
      assert.ok(elapsed >= (NODE_TIMEOUT_S - HEARTBEAT_S) * 1000 - 300, `eve dropped off after only ${elapsed} ms`);
      assert.deepEqual(usersOf(await listed(a, room)), ["ann"]);
      await waitUntil("eve's entry is swept", async () => !(await engine.presenceStored(room, eve.id)));
      assert.equal(await engine.presenceStored(room, ann.id), true);

      // A survivor spoke for the crashed instance: ann hears eve's leave, once. A message
      // published after it is the barrier for anything sent before it.
      await ann.client.seen(isPush("leave", room, eve.id), "eve's leave, sent by a survivor");
      assert.equal((await api(b, "/api/publish", { room, data: "after" })).status, 200);
      await ann.client.seen((f) => f.op === "message" && f.room === room, "the message after the crash");
      assert.equal(ann.client.frames.filter(isPush("leave", room, eve.id)).length, 1);
    });

    // A Redis Cluster does not lose every key at once (a master's replica takes over: redis-cluster.test.ts).
    (kind.name === "redis-cluster" ? test.skip : test)(
      "the engine restarted empty: the instances write their members again and the list is whole once more",
      async () => {
        const room = "chat:restart";
        const ann = await connectAs(a, "ann");
        const bob = await connectAs(b, "bob");
        for (const { client } of [ann, bob]) await subscribe(client, room);
        assert.deepEqual(usersOf(await listed(a, room)), ["ann", "bob"]);

        // The restart loses every entry and every node key.
        if (engine.restartEmpty === undefined) throw new Error(`${kind.name} cannot restart empty`);
        await engine.restartEmpty();
        await waitUntil(
          "both members are listed again",
          async () => {
            const reply = await api(b, `/api/presence?room=${room}`);
            return reply.status === 200 && usersOf((reply.body as { members: Member[] }).members).join() === "ann,bob";
          },
          10_000,
        );
        assert.deepEqual(await listed(a, room), [
          { user: "ann", client: ann.id, info: { name: "ann" } },
          { user: "bob", client: bob.id, info: { name: "bob" } },
        ]);
      },
    );
  });
}

for (const kind of ENGINES) describe(`engine: ${kind.name}`, () => presenceScenarios(kind));
