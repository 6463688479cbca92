// A join storm does not hold up a room's messages: 1,000 connections join a
// room with presence and join/leave events, over two real `crier serve`
// processes and each engine (one redis-server, a Redis Cluster, nats-server:
// test/support/engines.ts), while a member keeps publishing. A
// listener receives every message, in order and without a gap, and keeps
// receiving them while the storm goes on: each wave of joiners starts only
// once the listener has received a message published after the last wave
// began. Every join is heard, and the counts come out right.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { ServerFrame } from "crier-protocol";
import { WebSocket } from "ws";
import { api, type ConfigFile, type CrierInstance, startCrier, writeConfig } from "../support/crier.js";
import { ENGINES, type Engine, type EngineKind } from "../support/engines.js";
import { TestClient } from "../support/ws-client.js";

const ROOM = "storm:room";
const WAVES = 10;
const PER_WAVE = 100;

let engine: Engine;
let config: ConfigFile;
let instances: CrierInstance[] = [];
const joiners: WebSocket[] = [];
const clients: TestClient[] = [];

/** One joiner: connects anonymously and subscribes; resolves on `subscribed`. It reads nothing else. */
function join(instance: CrierInstance): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(instance.url);
    joiners.push(ws);
    ws.once("error", reject);
    ws.once("open", () => {
      ws.send(JSON.stringify({ op: "connect", id: 1 }));
      ws.send(JSON.stringify({ op: "subscribe", room: ROOM, id: 2 }));
    });
    const onMessage = (data: WebSocket.RawData): void => {
      const text = String(data);
      if (!text.includes('"id":2')) return;
      ws.off("message", onMessage);
      if (text.includes('"op":"subscribed"')) resolve();
      else reject(new Error(`subscribe refused: ${text}`));
    };
    ws.on("message", onMessage);
  });
}

async function member(instance: CrierInstance): Promise<TestClient> {
  const client = await TestClient.connect(instance.url);
  clients.push(client);
  client.ws.on("message", (data) => {
    if (String(data) === '{"op":"ping"}') client.send({ op: "pong" });
  });
  assert.equal((await client.call({ op: "subscribe", room: ROOM })).op, "subscribed");
  return client;
}

const sequenceOf = (frame: ServerFrame): number | undefined =>
  frame.op === "message" && frame.room === ROOM && typeof frame.data === "number" ? frame.data : undefined;

function stormScenario(kind: EngineKind): void {
  before(async () => {
    config = await writeConfig({
      namespaces: { storm: { presence: true, joinLeave: true } },
      // One test process opens every connection, and the publisher publishes as fast as it is answered.
      limits: {
        maxConnectionsPerIp: 5000,
        connectionsPerSecondPerIp: 100_000,
        connectionsPerSecond: 100_000,
        commandsPerSecond: 100_000,
      },
    });
    engine = await kind.start();
    instances = await Promise.all(
      ["a", "b"].map((id) =>
        startCrier({ args: ["--config", config.path, ...engine.args, "--node-id", id], readyTimeoutMs: 60_000 }),
      ),
    );
  });

  after(async () => {
    for (const ws of joiners.splice(0)) ws.terminate();
    for (const client of clients.splice(0)) client.ws.terminate();
    await Promise.all(instances.map((instance) => instance.kill("SIGKILL")));
    await engine?.stop();
    await config?.remove();
  });

  test("1,000 joins in a room: its messages keep arriving, in order, all through the storm", {
    timeout: 120_000,
  }, async () => {
    const [a, b] = instances;
    if (a === undefined || b === undefined) throw new Error("instances not started");
    const listener = await member(a);
    const publisher = await member(b);

    // The publisher publishes 1, 2, 3... one after the other until told to stop.
    let published = 0;
    let stop = false;
    const publishing = (async () => {
      while (!stop) {
        const reply = await publisher.call({ op: "publish", room: ROOM, data: published + 1 }, 30_000);
        assert.equal(reply.op, "ok", JSON.stringify(reply));
        published += 1;
      }
    })();

    for (let wave = 0; wave < WAVES; wave++) {
      // Delivery goes on while the storm does: a message published after the last wave began has arrived.
      const target = published + 1;
      await listener.seen((f) => (sequenceOf(f) ?? 0) >= target, `message ${target} before wave ${wave + 1}`, 30_000);
      await Promise.all(Array.from({ length: PER_WAVE }, (_, i) => join(i % 2 === 0 ? a : b)));
    }
    stop = true;
    await publishing;
    await listener.seen((f) => sequenceOf(f) === published, `the last message, ${published}`, 30_000);

    const sequence = listener.frames.flatMap((f) => {
      const n = sequenceOf(f);
      return n === undefined ? [] : [n];
    });
    assert.deepEqual(
      sequence,
      Array.from({ length: published }, (_, i) => i + 1),
      "every message, in order, once",
    );
    // Every joiner's join, and the publisher's.
    const joinCount = (): number => listener.frames.filter((f) => f.op === "join").length;
    await listener.seen(() => joinCount() >= WAVES * PER_WAVE + 1, "every join", 30_000);
    assert.equal(joinCount(), WAVES * PER_WAVE + 1);
    const ops = listener.frames.map((f) => f.op);
    const first = ops.indexOf("join", ops.indexOf("join") + 1);
    const last = ops.lastIndexOf("join");
    const during = listener.frames.slice(first, last).filter((f) => sequenceOf(f) !== undefined).length;
    assert.ok(during >= WAVES - 1, `only ${during} messages arrived between the first and the last join`);

    const stats = await api(a, `/api/presence/stats?room=${ROOM}`);
    assert.deepEqual(stats.body, { clients: WAVES * PER_WAVE + 2, users: 1 }, "all anonymous: one user");
  });
}

for (const kind of ENGINES) describe(`engine: ${kind.name}`, () => stormScenario(kind));
