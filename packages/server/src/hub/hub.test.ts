// The hub's index and its reference counting of broker channels, and a soak of
// thousands of real sessions that must leave every index empty and memory back
// where it started.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { decodeServerFrameMsgpack } from "crier-protocol/msgpack";
import { pino } from "pino";
import { startNode } from "../../../../test/support/node.js";
import { TestClient } from "../../../../test/support/ws-client.js";
import { ChannelNames } from "../broker/broker.js";
import { MemoryBroker } from "../broker/memory.js";
import { Hub, type HubMember } from "./hub.js";
import type { OutboundFrame } from "./outbound-frame.js";

function member(id: string, user = ""): HubMember & { frames: string[] } {
  const frames: string[] = [];
  return {
    id,
    user,
    frames,
    deliver: (frame) => frames.push(frame.json().toString()),
    roomRemoved: () => {},
    disconnect: () => {},
  };
}

async function hub(): Promise<{ hub: Hub; broker: MemoryBroker }> {
  const broker = new MemoryBroker();
  const instance = new Hub(broker, new ChannelNames("t:"), pino({ level: "silent" }));
  await broker.start((_channel, envelope) => instance.deliver(envelope));
  return { hub: instance, broker };
}

describe("hub", () => {
  test("the broker is subscribed to a room exactly while it has local members", async () => {
    const { hub: h, broker } = await hub();
    const a = member("a");
    const b = member("b");
    await h.subscribe(a, "r");
    await h.subscribe(b, "r");
    assert.equal(broker.channelCount(), 1);
    h.unsubscribe(a, "r");
    assert.equal(broker.channelCount(), 1);
    h.unsubscribe(b, "r");
    assert.equal(broker.channelCount(), 0);
    assert.deepEqual(h.stats(), { rooms: 0, users: 0, clients: 0 });
  });

  test("one publication is one shared frame, encoded once per subprotocol whatever the number of members", async () => {
    const { hub: h } = await hub();
    const seen: OutboundFrame[] = [];
    const make = (id: string): HubMember => ({ ...member(id), deliver: (frame) => seen.push(frame) });
    await h.subscribe(make("a"), "r");
    await h.subscribe(make("b"), "r");
    h.deliver({ kind: "message", room: "r", node: "n", data: '{"x":1}', from: "u" });
    assert.equal(seen.length, 2);
    const [first, second] = seen;
    assert.ok(first !== undefined && first === second, "both members got the same frame object");
    assert.equal(first.json(), second.json(), "the JSON bytes are encoded once and shared");
    assert.equal(first.json().toString(), '{"op":"message","room":"r","data":{"x":1},"from":"u"}');
    assert.equal(first.msgpack(), second.msgpack(), "the MessagePack bytes are encoded once and shared");
    assert.deepEqual(decodeServerFrameMsgpack(first.msgpack()), {
      op: "message",
      room: "r",
      data: { x: 1 },
      from: "u",
    });
  });

  test("join and leave reach the room's other members as one shared frame, not the member itself", async () => {
    const { hub: h } = await hub();
    const seen = new Map<string, OutboundFrame[]>();
    const make = (id: string): HubMember => {
      seen.set(id, []);
      return { ...member(id), deliver: (frame) => seen.get(id)?.push(frame) };
    };
    for (const id of ["a", "b", "c"]) await h.subscribe(make(id), "r");
    const joined = '{"user":"ann","client":"a","info":{"n":1}}';
    h.deliver({ kind: "join", room: "r", client: "a", node: "n", data: joined });
    h.deliver({ kind: "leave", room: "other", client: "x", node: "n", data: '{"user":"","client":"x"}' });
    assert.equal(seen.get("a")?.length, 0, "no join of its own");
    const [toB] = seen.get("b") ?? [];
    assert.ok(toB !== undefined && toB === seen.get("c")?.[0], "b and c got the same frame object");
    assert.deepEqual(JSON.parse(toB.json().toString()), {
      op: "join",
      room: "r",
      member: { user: "ann", client: "a", info: { n: 1 } },
    });
    assert.deepEqual(decodeServerFrameMsgpack(toB.msgpack()), JSON.parse(toB.json().toString()));
    h.deliver({ kind: "leave", room: "r", client: "a", node: "n", data: '{"user":"ann","client":"a"}' });
    assert.equal(seen.get("b")?.length, 2, "a leave of another room is not delivered; this room's is");
    assert.equal(
      seen.get("b")?.[1]?.json().toString(),
      '{"op":"leave","room":"r","member":{"user":"ann","client":"a"}}',
    );
  });

  test("members are indexed by user and removed from everything on leave", async () => {
    const { hub: h, broker } = await hub();
    const a = member("a", "alice");
    await h.addMember(a);
    await h.subscribe(a, "r1");
    await h.subscribe(a, "r2");
    h.deliver({ kind: "direct", user: "alice", node: "n", data: "1" });
    assert.deepEqual(a.frames, ['{"op":"direct","data":1}']);
    h.removeMember(a, ["r1", "r2"]);
    assert.deepEqual(h.stats(), { rooms: 0, users: 0, clients: 0 });
    assert.equal(broker.channelCount(), 0);
  });

  test("a refused broker subscription leaves no index entry behind", async () => {
    class RefusingBroker extends MemoryBroker {
      override subscribe(): Promise<void> {
        return Promise.reject(new Error("down"));
      }
    }
    const refusing = new Hub(new RefusingBroker(), new ChannelNames("t:"), pino({ level: "silent" }));
    await assert.rejects(refusing.subscribe(member("a"), "r"), /down/);
    assert.equal(refusing.roomSize("r"), 0);
    assert.deepEqual(refusing.stats(), { rooms: 0, users: 0, clients: 0 });
  });
});

describe("thousands of sessions", () => {
  test("open and close 2500 sessions in rooms: indexes end empty and memory returns", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    let counter = 0;
    const server = await startNode(
      { limits: { maxConnectionsPerIp: 10_000, connectionsPerSecondPerIp: 10_000 } },
      { authenticate: () => ({ user: `user-${counter++ % 300}` }) },
    );
    const round = async (): Promise<void> => {
      const clients = await Promise.all(
        Array.from({ length: 500 }, async (_, i) => {
          const client = await TestClient.connect(server.url);
          await client.call({ op: "subscribe", room: `room-${i % 50}` });
          await client.call({ op: "subscribe", room: `own-${i}` });
          return client;
        }),
      );
      assert.equal(server.node.connectionCount(), 500);
      await Promise.all(
        clients.map((client) => {
          client.close();
          return client.waitClosed();
        }),
      );
      // The server sees each close a moment after the client does.
      const deadline = Date.now() + 5000;
      while (server.node.connectionCount() > 0 && Date.now() < deadline) await new Promise(setImmediate);
    };
    try {
      await round();
      gc();
      const baseline = process.memoryUsage().heapUsed;
      for (let i = 0; i < 4; i++) await round();
      assert.equal(server.node.connectionCount(), 0);
      assert.deepEqual(server.node.hub.stats(), { rooms: 0, users: 0, clients: 0 });
      gc();
      const growth = process.memoryUsage().heapUsed - baseline;
      assert.ok(growth < 8 * 1024 * 1024, `heap grew by ${(growth / 1048576).toFixed(1)} MiB after 2000 sessions`);
    } finally {
      await server.close();
    }
  });
});
