// What only the NATS presence store has (the contract suite covers the rest),
// against a real nats-server: its keys, the sweep of a dead instance (one
// sweeper, each leave once, even when a sweeper dies half-way or two publish
// it), the joins of an instance that comes back, and a NATS restart.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ProtocolError } from "crier-protocol";
import type { KV, NatsConnection, Subscription } from "nats";
import { type NatsProcess, startNats } from "../../../../test/support/nats.js";
import { waitUntil } from "../../../../test/support/wait.js";
import { decodeEnvelope, type Envelope } from "../broker/envelope.js";
import { nodesBucket } from "../cluster/nats.js";
import { bucketKeys, encodeToken, NatsLink, natsNames } from "../nats/connection.js";
import { NatsPresence, type NatsPresenceOptions } from "./nats.js";
import { entryKey, lockKey, PresenceBucket, tombKey } from "./nats-bucket.js";
import { leaveId } from "./nats-sweep.js";

function isUnavailable(error: unknown): boolean {
  return error instanceof ProtocolError && error.code === "unavailable";
}

const ANN = { user: "ann", client: "c1", info: { name: "Ann", tags: ["a/b", 1.5] } };
const BOB = { user: "bob", client: "c2" };
const CAT = { user: "cat", client: "c3" };

let nats: NatsProcess;
let admin: NatsLink;
let conn: NatsConnection;
before(async () => {
  nats = await startNats();
  admin = new NatsLink("admin", { url: nats.url });
  conn = await admin.start();
});
after(async () => {
  await admin.close();
  await nats.stop();
});

let prefixSeq = 0;

/** One cluster's presence: its own prefix, stores on their own connections, a listener on its rooms' subjects. */
async function cluster() {
  prefixSeq += 1;
  const prefix = `pn${prefixSeq}:`;
  const names = natsNames(prefix);
  const nodes: KV = await nodesBucket(admin, prefix, 10_000);
  const stores: NatsPresence[] = [];
  /** Every envelope published on a room's channel (`room:ROOM`), in order. */
  const heard: Envelope[] = [];
  let barriers = 0;
  const listener: Subscription = conn.subscribe(`${names.liveSubjects.slice(0, -1)}>`, {
    callback: (err, msg) => {
      if (err !== null) return;
      if (msg.string() === "barrier") barriers += 1;
      else heard.push(decodeEnvelope(msg.string()));
    },
  });
  await conn.flush();
  const c = {
    prefix,
    names,
    heard,
    setLive: async (node: string, live: boolean): Promise<void> => {
      if (live) await nodes.put(encodeToken(node), "{}");
      else await nodes.purge(encodeToken(node));
    },
    /** A store as every instance has it: "quiet" is a room without join/leave events. */
    open: async (nodeId?: string, options: Partial<NatsPresenceOptions> = {}): Promise<NatsPresence> => {
      const store = new NatsPresence({
        link: new NatsLink("presence", { url: nats.url }),
        prefix,
        ...(nodeId === undefined ? {} : { nodeId }),
        channel: (room) => `room:${room}`,
        announces: (room) => room !== "quiet",
        sweepMs: 0,
        ...options,
      });
      stores.push(store);
      await store.start();
      return store;
    },
    /** Resolves once everything published on these rooms' channels before now has been heard. */
    settled: async (...rooms: string[]): Promise<void> => {
      const before = barriers;
      for (const room of rooms) conn.publish(names.live(`room:${room}`), "barrier");
      await waitUntil("the barriers are heard", () => barriers === before + rooms.length);
    },
    heardOf: (kind: string, room: string): string[] =>
      heard.filter((e) => e.kind === kind && e.room === room).map((e) => `${e.client}:${e.data}`),
    bucket: () => PresenceBucket.open(admin, prefix, 3_600_000),
    keys: (filter = ">") => bucketKeys(admin, names.presenceBucket, filter),
    sweepKeys: (filter: string) => bucketKeys(admin, names.presenceSweepBucket, filter),
    async close(): Promise<void> {
      listener.unsubscribe();
      await Promise.all(stores.map((store) => store.close()));
    },
  };
  return c;
}

describe("NatsPresence against a real nats-server", () => {
  test("an entry is JSON {user, client, info, node} under m.<room>.<node>.<user>.<client>; a removed one leaves no key", async () => {
    const c = await cluster();
    try {
      await c.setLive("n:1", true);
      const store = await c.open();
      await store.add("chat:1", { ...ANN, node: "n:1" });
      const key = entryKey("chat:1", { ...ANN, node: "n:1" });
      assert.equal(key, "m.chat=3A1.n=3A1.ann.c1");
      const bucket = await c.bucket();
      assert.deepEqual(await c.keys("m.>"), [key]);
      assert.deepEqual((await bucket.kv.get(key))?.json(), { user: "ann", client: "c1", node: "n:1", info: ANN.info });
      assert.deepEqual(await store.stats("chat:1"), { clients: 1, users: 1 });
      await store.remove("chat:1", "c1");
      // No delete marker: the room's keys are its entries, which is what stats() counts.
      assert.deepEqual(await c.keys("m.>"), []);
      assert.deepEqual(await store.stats("chat:1"), { clients: 0, users: 0 });
    } finally {
      await c.close();
    }
  });

  test("a delete by revision is a compare-and-delete: after a newer write of the key it fails and the key stays", async () => {
    const c = await cluster();
    try {
      const bucket = await c.bucket();
      const first = await bucket.kv.put("m.r.n1.u.c1", "{}");
      const second = await bucket.kv.put("m.r.n1.u.c1", '{"again":true}');
      assert.equal(await bucket.deleteRevision(first), false, "the revision a sweeper read is gone");
      assert.deepEqual(await c.keys("m.>"), ["m.r.n1.u.c1"]);
      assert.equal(await bucket.deleteRevision(second), true);
      assert.equal(await bucket.deleteRevision(second), false, "only once");
      assert.deepEqual(await c.keys("m.>"), []);
    } finally {
      await c.close();
    }
  });

  test("a long user id is hashed in the key and still counted apart from others", async () => {
    const c = await cluster();
    try {
      await c.setLive("n1", true);
      const store = await c.open();
      const long = "u".repeat(300);
      await store.add("r", { user: long, client: "c1", node: "n1" });
      await store.add("r", { user: `${long}x`, client: "c2", node: "n1" });
      await store.add("r", { user: long, client: "c3", node: "n1" });
      const [key] = await c.keys("m.r.n1.*.c1");
      assert.ok(key !== undefined && key.length < 100, `key ${key}`);
      assert.deepEqual(await store.stats("r"), { clients: 3, users: 2 });
      assert.deepEqual(
        (await store.list("r")).map((m) => m.user.length),
        [300, 300, 301],
      );
    } finally {
      await c.close();
    }
  });

  test("entries that are not entries are dropped from the list and the bucket", async () => {
    const c = await cluster();
    try {
      await c.setLive("n1", true);
      const store = await c.open();
      await store.add("r", { ...ANN, node: "n1" });
      const bucket = await c.bucket();
      await bucket.kv.put("m.r.n1.x.bad1", "not json");
      await bucket.kv.put("m.r.n1.x.bad2", '{"user":"x"}');
      assert.deepEqual(await store.list("r"), [ANN]);
      assert.deepEqual(await c.keys("m.>"), [entryKey("r", { ...ANN, node: "n1" })]);
    } finally {
      await c.close();
    }
  });
});

describe("sweeping an instance that is gone, on NATS", () => {
  test("one sweeper per dead instance removes its entries and publishes each leave once, with its join's member", async () => {
    const c = await cluster();
    try {
      for (const node of ["n1", "n2", "n3"]) await c.setLive(node, true);
      const n1 = await c.open("n1");
      const n2 = await c.open("n2");
      const n3 = await c.open("n3");
      await n1.add("r1", { ...ANN, node: "n1" });
      await n1.add("r1", { ...BOB, node: "n1" });
      await n1.add("r2", { ...ANN, node: "n1" });
      await n1.add("quiet", { ...BOB, node: "n1" });
      await n2.add("r1", { ...CAT, node: "n2" });
      await c.setLive("n1", false);
      assert.deepEqual(await n2.stats("r1"), { clients: 3, users: 3 }, "counted until swept");

      // Two survivors sweep at once: the claim lets one of them do it.
      const removed = await Promise.all([n2.sweep(), n3.sweep()]);
      assert.equal(
        removed.reduce((a, b) => a + b, 0),
        4,
        `removed ${removed}`,
      );
      await c.settled("r1", "r2", "quiet");
      // The member exactly as the tracker's join carries it: JSON.stringify(member).
      assert.deepEqual(c.heardOf("leave", "r1").sort(), [`c1:${JSON.stringify(ANN)}`, `c2:${JSON.stringify(BOB)}`]);
      assert.deepEqual(c.heardOf("leave", "r2"), [`c1:${JSON.stringify(ANN)}`]);
      assert.deepEqual(c.heardOf("leave", "quiet"), [], "no leave where the room announces none");
      assert.ok(
        c.heard.every((e) => e.node === "n1"),
        "sent on the dead instance's behalf",
      );
      assert.deepEqual(await n2.list("r1"), [CAT]);
      assert.deepEqual(await n2.stats("r1"), { clients: 1, users: 1 }, "the counts agree after the sweep");
      assert.deepEqual(await n2.stats("r2"), { clients: 0, users: 0 });
      assert.deepEqual(await c.sweepKeys("n.*"), ["n.n2"], "n1 is no longer indexed");
      assert.deepEqual(await c.sweepKeys("s.*"), [], "the claim is released");
      assert.equal(await n3.sweep(), 0, "nothing left to sweep");

      // n1 was only stalled: back, it writes its entries again and announces the joins of those swept.
      await c.setLive("n1", true);
      await n1.add("r1", { user: "dan", client: "c4", node: "n1" });
      await n1.rewrite();
      await c.settled("r1", "r2", "quiet");
      assert.deepEqual(c.heardOf("join", "r1").sort(), [`c1:${JSON.stringify(ANN)}`, `c2:${JSON.stringify(BOB)}`]);
      assert.deepEqual(c.heardOf("join", "r2"), [`c1:${JSON.stringify(ANN)}`]);
      assert.deepEqual(c.heardOf("join", "quiet"), []);
      assert.equal(c.heard.filter((e) => e.kind === "leave").length, 3, "no leave announced twice");
      assert.deepEqual(await n2.stats("r1"), { clients: 4, users: 4 });
      assert.deepEqual(await n2.list("quiet"), [BOB]);
      assert.deepEqual(await c.keys("g.>"), [], "the tombstones are gone with the joins");
      await n1.rewrite();
      await c.settled("r1", "r2");
      assert.equal(c.heard.filter((e) => e.kind === "join").length, 3, "a second rewrite announces nothing");
    } finally {
      await c.close();
    }
  });

  test("a process restarted under the node id of one that crashed sweeps what that one left, at start", async () => {
    const c = await cluster();
    try {
      await c.setLive("n7", true);
      const crashed = await c.open("n7");
      await crashed.add("restarted", { ...ANN, node: "n7" });
      await crashed.close();
      // Its membership entry has not even expired: the new process must not take the old members for its own.
      const restarted = await c.open("n7");
      assert.deepEqual(await restarted.list("restarted"), []);
      await c.settled("restarted");
      assert.deepEqual(c.heardOf("leave", "restarted"), [`c1:${JSON.stringify(ANN)}`]);
    } finally {
      await c.close();
    }
  });

  test("an instance back before its sweep keeps its entries and nobody hears a leave", async () => {
    const c = await cluster();
    try {
      await c.setLive("n5", true);
      await c.setLive("n6", true);
      const n5 = await c.open("n5");
      const n6 = await c.open("n6");
      await n5.add("back", { ...ANN, node: "n5" });
      await c.setLive("n5", false);
      assert.deepEqual(await n6.list("back"), [], "hidden while it is gone");
      await c.setLive("n5", true);
      assert.equal(await n6.sweep(), 0);
      await c.settled("back");
      assert.deepEqual(c.heardOf("leave", "back"), []);
      assert.deepEqual(await n6.list("back"), [ANN]);
      await n5.rewrite();
      await c.settled("back");
      assert.deepEqual(c.heardOf("join", "back"), [], "it never left, so it does not join again");
    } finally {
      await c.close();
    }
  });

  test("an entry written again after a sweeper read it is not taken: the claim fails and nothing is announced", async () => {
    const c = await cluster();
    try {
      await c.setLive("n1", true);
      await c.setLive("n2", true);
      const n1 = await c.open("n1");
      const n2 = await c.open("n2");
      await n1.add("raced", { ...ANN, node: "n1" });
      const bucket = await c.bucket();
      const key = entryKey("raced", { ...ANN, node: "n1" });
      const read = await bucket.kv.get(key);
      // What a sweeper that read the entry and then died before its claim leaves behind.
      await bucket.kv.put(
        tombKey("raced", "n1", "c1"),
        JSON.stringify({ member: ANN, rev: read?.revision, sent: false }),
      );
      // n1 writes it again at the revision it knows: that succeeds, since nobody claimed it.
      await n1.rewrite();
      await c.setLive("n1", false);
      assert.equal(await n2.sweep(), 1, "the entry as written again is swept");
      await c.setLive("n1", true);
      await n1.rewrite();
      await c.settled("raced");
      assert.deepEqual(c.heardOf("leave", "raced"), [`c1:${JSON.stringify(ANN)}`], "one leave");
      assert.deepEqual(c.heardOf("join", "raced"), [`c1:${JSON.stringify(ANN)}`], "then one join");
      assert.deepEqual(
        c.heard.map((e) => e.kind),
        ["leave", "join"],
      );
    } finally {
      await c.close();
    }
  });

  test("a sweeper that died half-way is taken over: its claim from a gone sweeper, its leaves sent once", async () => {
    const c = await cluster();
    try {
      for (const node of ["n1", "n2", "dead-sweeper"]) await c.setLive(node, true);
      const n1 = await c.open("n1");
      await n1.add("half", { ...ANN, node: "n1" });
      await n1.add("half", { ...BOB, node: "n1" });
      await c.setLive("n1", false);
      const bucket = await c.bucket();
      // The dead sweeper held the claim, took ann out and published her leave, then died before marking it sent.
      await bucket.sweeps.put(lockKey("n1"), JSON.stringify({ sweeper: "dead-sweeper" }));
      const annKey = entryKey("half", { ...ANN, node: "n1" });
      const ann = await bucket.kv.get(annKey);
      const rev = ann?.revision ?? 0;
      await bucket.kv.put(tombKey("half", "n1", "c1"), JSON.stringify({ member: ANN, rev, sent: false }));
      await bucket.deleteRevision(rev);
      const leave = { kind: "leave" as const, room: "half", client: "c1", node: "n1", data: JSON.stringify(ANN) };
      await bucket.announce("room:half", leave, leaveId(annKey, rev));

      const n2 = await c.open("n2");
      assert.equal(await n2.sweep(), 0, "a claim held by a live sweeper is left alone");
      await c.setLive("dead-sweeper", false);
      assert.equal(await n2.sweep(), 1, "bob, whom the dead sweeper had not got to");
      await c.settled("half");
      assert.deepEqual(c.heardOf("leave", "half").sort(), [`c1:${JSON.stringify(ANN)}`, `c2:${JSON.stringify(BOB)}`]);
      assert.deepEqual(await n2.stats("half"), { clients: 0, users: 0 });
      assert.equal(await n2.sweep(), 0);
      await c.settled("half");
      assert.equal(c.heardOf("leave", "half").length, 2, "each leave once");
    } finally {
      await c.close();
    }
  });
});

describe("NatsPresence across a NATS restart", () => {
  test("calls are unavailable while NATS is down; back empty, the entries this store still has are written again", async () => {
    const own = await startNats();
    const link = new NatsLink("admin", { url: own.url });
    const store = new NatsPresence({
      link: new NatsLink("presence", { url: own.url }),
      prefix: "restart:",
      sweepMs: 0,
    });
    try {
      await link.start();
      const nodes = await nodesBucket(link, "restart:", 10_000);
      await nodes.put(encodeToken("n1"), "{}");
      await store.start();
      await store.add("r", { user: "ann", client: "c1", node: "n1" });
      await store.add("r", { user: "bob", client: "c2", node: "n1" });
      await own.kill("SIGKILL");
      await waitUntil("the store sees NATS gone", () => !store.isReady());
      await assert.rejects(store.add("r", { user: "cat", client: "c3", node: "n1" }), isUnavailable);
      await assert.rejects(store.remove("r", "c2"), isUnavailable);
      await assert.rejects(store.list("r"), isUnavailable);

      await own.restart({ wipe: true });
      // The restart lost the membership entry too; the membership would write it again.
      await waitUntil("the admin connection is back", () => link.isReady(), 10_000);
      await waitUntil(
        "the membership entry is written again",
        async () => {
          const again = await nodesBucket(link, "restart:", 10_000).catch(() => undefined);
          return (
            again !== undefined &&
            (await again.put(encodeToken("n1"), "{}").then(
              () => true,
              () => false,
            ))
          );
        },
        10_000,
      );
      await waitUntil(
        "ann is listed again",
        async () => (await store.list("r").catch(() => [])).some((member) => member.client === "c1"),
        10_000,
      );
      // Neither the member whose add failed nor the one removed during the outage came back.
      assert.deepEqual(await bucketKeys(link, natsNames("restart:").presenceBucket, "m.>"), ["m.r.n1.ann.c1"]);
    } finally {
      await store.close();
      await link.close();
      await own.stop();
    }
  });
});
