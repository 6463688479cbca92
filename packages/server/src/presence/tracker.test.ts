// The order of a member's steps: its leave never overtakes its join, in the
// store or on the channel, however the two race; and failures undo cleanly.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Member, ProtocolError } from "crier-protocol";
import { pino } from "pino";
import type { Envelope } from "../broker/envelope.js";
import { MemoryPresence } from "./memory.js";
import type { PresenceEntry } from "./presence.js";
import { type PresenceSettings, PresenceTracker } from "./tracker.js";

/** A memory store whose adds wait until the test lets them through, or fail. */
class GatedStore extends MemoryPresence {
  private readonly gates: Array<() => void> = [];
  failAdds = false;

  override async add(room: string, entry: PresenceEntry): Promise<void> {
    await new Promise<void>((resolve) => this.gates.push(resolve));
    if (this.failAdds) throw new ProtocolError("unavailable", "store down");
    return super.add(room, entry);
  }

  /** Lets the oldest waiting add through, once one is waiting. */
  async release(): Promise<void> {
    while (this.gates.length === 0) await new Promise((resolve) => setImmediate(resolve));
    this.gates.shift()?.();
  }
}

const BOTH: PresenceSettings = { presence: true, joinLeave: true };
const ANN: Member = { user: "ann", client: "c1", info: { name: "Ann" } };

function tracker(store: GatedStore, settings: (room: string) => PresenceSettings = () => BOTH) {
  const announced: string[] = [];
  const envelopes: Envelope[] = [];
  const instance = new PresenceTracker({
    nodeId: "n1",
    store,
    settings,
    announce: async (room, envelope) => {
      envelopes.push(envelope);
      announced.push(`${envelope.kind} ${room} ${envelope.client ?? ""}`);
    },
    logger: pino({ level: "silent" }),
  });
  return { tracker: instance, announced, envelopes };
}

describe("PresenceTracker", () => {
  test("a join is stored, then announced with the member as payload", async () => {
    const store = new GatedStore();
    const { tracker: t, announced, envelopes } = tracker(store);
    const joined = t.joined("r", ANN);
    assert.deepEqual(announced, [], "nothing is announced before the member is stored");
    await store.release();
    await joined;
    assert.deepEqual(await store.list("r"), [ANN]);
    assert.deepEqual(announced, ["join r c1"]);
    assert.deepEqual(JSON.parse(envelopes[0]?.data ?? ""), ANN);
    assert.equal(envelopes[0]?.node, "n1");
  });

  test("a leave while the join is still being stored waits for it: stored, announced, removed, announced", async () => {
    const store = new GatedStore();
    const { tracker: t, announced } = tracker(store);
    const joined = t.joined("r", ANN);
    t.left("r", "c1");
    await store.release();
    await joined;
    await t.drain();
    assert.deepEqual(announced, ["join r c1", "leave r c1"]);
    assert.deepEqual(await store.list("r"), [], "the remove came after the add");
  });

  test("a join whose store write fails rejects and is never announced, nor is its leave", async () => {
    const store = new GatedStore();
    store.failAdds = true;
    const { tracker: t, announced } = tracker(store);
    const joined = t.joined("r", ANN);
    await store.release();
    await assert.rejects(joined, /store down/);
    t.left("r", "c1");
    await t.drain();
    assert.deepEqual(announced, []);
    assert.deepEqual(await store.list("r"), []);
  });

  test("what a namespace enables decides: events only, the list only, or nothing", async () => {
    const store = new GatedStore();
    const settings = (room: string): PresenceSettings => ({
      presence: room.startsWith("listed"),
      joinLeave: room.startsWith("events"),
    });
    const { tracker: t, announced } = tracker(store, settings);
    const events = t.joined("events:1", ANN);
    await store.release();
    await events;
    await t.joined("plain:1", ANN);
    const listed = t.joined("listed:1", ANN);
    await store.release();
    await listed;
    assert.deepEqual(await store.list("listed:1"), [ANN]);
    // Stored too, so that the survivors of a crash know whose leaves to announce.
    assert.deepEqual(await store.list("events:1"), [ANN], "events only: stored as well");
    for (const room of ["events:1", "plain:1", "listed:1"]) t.left(room, "c1");
    await t.drain();
    assert.deepEqual(announced, ["join events:1 c1", "leave events:1 c1"]);
    assert.deepEqual(await store.list("listed:1"), []);
    assert.deepEqual(await store.list("events:1"), []);
  });
});
