// Presence that stays true when an instance crashes or stalls (docs/protocol.md
// "An instance crashes"): three real `crier serve` processes over each engine
// (test/support/engines.ts: a real redis-server, a real Redis Cluster, a real
// nats-server), members on each. When one is killed, every member on the
// others hears exactly one `leave` for each of its members, with the member of
// its `join`, and `presence` agrees everywhere. When one is only stalled past
// the node timeout (SIGSTOP), the same leaves come; once it resumes (SIGCONT)
// its members are announced with one `join` each and listed again, and nobody
// hears a `join` again for a member that never left.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import type { Member, ServerFrame } from "crier-protocol";
import { api, type ConfigFile, type CrierInstance, startCrier, writeConfig } from "../support/crier.js";
import { ENGINES, type Engine, type EngineKind } from "../support/engines.js";
import { JWT_SECRET, token } from "../support/tokens.js";
import { TestClient } from "../support/ws-client.js";

const HEARTBEAT_S = 0.2;
const NODE_TIMEOUT_S = 1;
/** The bound: the node timeout and a few seconds for a survivor's sweep (one heartbeat) and delivery. */
const LEAVES_WITHIN_MS = (NODE_TIMEOUT_S + 4) * 1000;
const ROOMS = ["chat:crash:1", "chat:crash:2"];

let engine: Engine;
let config: ConfigFile;
const instances: CrierInstance[] = [];
let clients: TestClient[] = [];

interface Connected {
  client: TestClient;
  member: Member;
}

async function start(id: string): Promise<CrierInstance> {
  const instance = await startCrier({
    args: ["--config", config.path, ...engine.args, "--node-id", id, "--jwt-secret", JWT_SECRET],
    // Three start at once, on a machine that may be busy.
    readyTimeoutMs: 60_000,
  });
  instances.push(instance);
  return instance;
}

/** A member of both rooms on `instance`, answering pings as real clients do. */
async function member(instance: CrierInstance, user: string): Promise<Connected> {
  const client = await TestClient.open(instance.url);
  clients.push(client);
  client.ws.on("message", (data) => {
    if (String(data) === '{"op":"ping"}') client.send({ op: "pong" });
  });
  const reply = await client.call({ op: "connect", token: await token({ sub: user, info: { name: user } }) });
  if (reply.op !== "connected") throw new Error(`connect failed: ${JSON.stringify(reply)}`);
  for (const room of ROOMS) assert.equal((await client.call({ op: "subscribe", room })).op, "subscribed");
  return { client, member: { user, client: reply.client, info: { name: user } } };
}

function push(op: "join" | "leave", room: string, client: string): (frame: ServerFrame) => boolean {
  return (frame) => frame.op === op && frame.room === room && frame.member.client === client;
}

async function listed(instance: CrierInstance, room: string): Promise<Member[]> {
  const reply = await api(instance, `/api/presence?room=${encodeURIComponent(room)}`);
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  return (reply.body as { members: Member[] }).members;
}

async function counted(instance: CrierInstance, room: string): Promise<unknown> {
  const reply = await api(instance, `/api/presence/stats?room=${encodeURIComponent(room)}`);
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  return reply.body;
}

const byClient = (a: Member, b: Member): number => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0);

/** Everything published in the rooms before now has reached `listeners`: a message after it, seen by each. */
async function barrier(via: CrierInstance, listeners: Connected[], label: string): Promise<void> {
  for (const room of ROOMS) {
    assert.equal((await api(via, "/api/publish", { room, data: label })).status, 200);
    for (const { client } of listeners) {
      await client.seen((f) => f.op === "message" && f.room === room && f.data === label, `${label} in ${room}`);
    }
  }
}

function crashScenarios(kind: EngineKind): void {
  before(async () => {
    config = await writeConfig({
      cluster: { heartbeat: HEARTBEAT_S, nodeTimeout: NODE_TIMEOUT_S },
      namespaces: { chat: { presence: true, joinLeave: true } },
    });
    engine = await kind.start();
  });

  afterEach(async () => {
    for (const client of clients) client.ws.terminate();
    clients = [];
    for (const instance of instances.splice(0)) {
      instance.process.kill("SIGCONT");
      await instance.kill("SIGKILL");
    }
  });

  after(async () => {
    await engine?.stop();
    await config?.remove();
  });

  describe(`presence when an instance crashes or stalls (3 instances, ${kind.name})`, { timeout: 90_000 }, () => {
    test("SIGKILL: every surviving member hears one leave per member of the dead instance, and presence agrees", async () => {
      const [a, b, c] = await Promise.all([start("a"), start("b"), start("c")]);
      const survivors = [await member(a, "ann"), await member(a, "abe"), await member(b, "bob")];
      const dead = [await member(c, "cat"), await member(c, "cy")];
      const everyone = [...survivors, ...dead].map((m) => m.member).sort(byClient);
      for (const instance of [a, b, c])
        for (const room of ROOMS) assert.deepEqual(await listed(instance, room), everyone);
      assert.deepEqual(await counted(b, ROOMS[0] ?? ""), { clients: 5, users: 5 });

      await c.kill("SIGKILL");
      for (const { client, member: m } of survivors) {
        for (const room of ROOMS) {
          for (const gone of dead) {
            const leave = await client.seen(
              push("leave", room, gone.member.client),
              `${m.user} hears ${gone.member.user}'s leave in ${room}`,
              LEAVES_WITHIN_MS,
            );
            assert.deepEqual(leave, { op: "leave", room, member: gone.member }, "the member of the join");
          }
        }
      }
      await barrier(a, survivors, "after the crash");
      for (const { client } of survivors) {
        for (const room of ROOMS) {
          for (const gone of dead) {
            assert.equal(client.frames.filter(push("leave", room, gone.member.client)).length, 1, "exactly one leave");
          }
        }
      }
      const remaining = survivors.map((m) => m.member).sort(byClient);
      for (const instance of [a, b]) {
        for (const room of ROOMS) {
          assert.deepEqual(await listed(instance, room), remaining);
          assert.deepEqual(await counted(instance, room), { clients: 3, users: 3 }, "the counts agree");
        }
      }
    });

    test("SIGSTOP past the node timeout, then SIGCONT: leaves while it is out, one join each when it is back", async () => {
      const [a, b, c] = await Promise.all([start("a"), start("b"), start("c")]);
      const others = [await member(a, "ann"), await member(b, "bob")];
      const stalled = [await member(c, "cat"), await member(c, "cy")];
      const everyone = [...others, ...stalled].map((m) => m.member).sort(byClient);

      c.process.kill("SIGSTOP");
      for (const { client, member: m } of others) {
        for (const room of ROOMS) {
          for (const gone of stalled) {
            await client.seen(
              push("leave", room, gone.member.client),
              `${m.user} hears ${gone.member.user}'s leave in ${room} while C is stopped`,
              LEAVES_WITHIN_MS,
            );
          }
        }
      }
      const out = others.map((m) => m.member).sort(byClient);
      for (const instance of [a, b]) for (const room of ROOMS) assert.deepEqual(await listed(instance, room), out);

      c.process.kill("SIGCONT");
      // Back in the cluster, C announces each of its members once more, to everyone (but the member itself).
      const listeners = [...others, ...stalled];
      for (const { client, member: m } of listeners) {
        for (const room of ROOMS) {
          for (const back of stalled) {
            if (back.member.client === m.client) continue;
            const join = await client.seen(
              push("join", room, back.member.client),
              `${m.user} hears ${back.member.user}'s join again in ${room}`,
              LEAVES_WITHIN_MS,
            );
            assert.deepEqual(join, { op: "join", room, member: back.member });
          }
        }
      }
      await barrier(a, listeners, "after the stall");
      for (const { client, member: m } of listeners) {
        for (const room of ROOMS) {
          for (const x of [...others, ...stalled]) {
            if (x.member.client === m.client) continue;
            const joins = client.frames.filter(push("join", room, x.member.client)).length;
            const leaves = client.frames.filter(push("leave", room, x.member.client)).length;
            const wasStalled = stalled.includes(x);
            // Those on C: joined before m subscribed or after, then left and joined again once. The others never left.
            assert.equal(leaves, wasStalled ? 1 : 0, `${m.user} heard ${leaves} leaves of ${x.member.user}`);
            const joinedBefore = everyoneBefore(m, x);
            assert.equal(
              joins,
              (joinedBefore ? 0 : 1) + (wasStalled ? 1 : 0),
              `${m.user} heard ${joins} joins of ${x.member.user}`,
            );
          }
        }
      }
      for (const instance of [a, b, c]) {
        for (const room of ROOMS) {
          assert.deepEqual(await listed(instance, room), everyone, `listed from ${instance.nodeId}`);
          assert.deepEqual(await counted(instance, room), { clients: 4, users: 4 });
        }
      }

      /** Whether x subscribed before m did (then m never heard x's first join). */
      function everyoneBefore(m: Member, x: Connected): boolean {
        const order = [...others, ...stalled].map((o) => o.member.client);
        return order.indexOf(x.member.client) < order.indexOf(m.client);
      }
    });
  });
}

for (const kind of ENGINES) describe(`engine: ${kind.name}`, () => crashScenarios(kind));
