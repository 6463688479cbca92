// "The NATS engine rides out nats-server dying": three real `crier serve`
// processes over one real nats-server with JetStream (the cross-instance and
// instance-kill scenarios run on NATS through test/support/engines.ts). Here
// nats-server is SIGKILLed during traffic and restarted, with its JetStream
// store kept (history survives: every acknowledged message reaches every
// subscriber once, in order, in the same epoch) and with it lost (a new epoch:
// subscribers are told recovered: false rather than fed wrong offsets). Clients
// stay connected throughout and every publish meanwhile is refused with
// `unavailable`. Also: the configurations the NATS engine refuses at start.

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { api, type CrierInstance, runCli, startCrier } from "../support/crier.js";
import {
  ackIndex,
  allAcks,
  assertNoProblems,
  contiguityProblem,
  Publisher,
  roomPosition,
  sequenceProblem,
} from "../support/delivery.js";
import { type NatsProcess, startNats } from "../support/nats.js";
import { freePort } from "../support/redis.js";
import { RecordingSubscriber } from "../support/sdk-subscriber.js";
import { waitUntil } from "../support/wait.js";

const CONFIG = {
  cluster: { heartbeat: 0.2, nodeTimeout: 2 },
  namespaces: { chat: { history: { size: 10_000, ttl: "10m" } } },
  limits: { maxConnectionsPerIp: 100_000, commandsPerSecond: 10_000 },
};

describe("nats-server killed and restarted during traffic", () => {
  let nats: NatsProcess;
  let natsDown = false;
  let dir = "";
  const instances: CrierInstance[] = [];
  let subscribers: RecordingSubscriber[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "crier-nats-test-"));
    const config = join(dir, "crier.json");
    await writeFile(config, JSON.stringify(CONFIG));
    nats = await startNats();
    instances.push(
      ...(await Promise.all(
        ["a", "b", "c"].map((id) => startCrier({ args: ["--nats", nats.url, "--node-id", id, "--config", config] })),
      )),
    );
  });

  afterEach(async () => {
    for (const subscriber of subscribers) subscriber.close();
    subscribers = [];
    if (natsDown) await nats.restart();
    natsDown = false;
  });

  after(async () => {
    await Promise.all(instances.map((instance) => instance.stop()));
    await nats?.stop();
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  async function subscribeMany(room: string, count: number): Promise<RecordingSubscriber[]> {
    const group = Array.from(
      { length: count },
      (_, i) => new RecordingSubscriber((instances[i % instances.length] as CrierInstance).url, room),
    );
    subscribers.push(...group);
    await Promise.all(group.map((subscriber) => subscriber.start()));
    return group;
  }

  /** Publishes through every instance until `acked` more are in after the restart, with NATS killed half way. */
  async function trafficAcrossAnOutage(room: string, wipe: boolean) {
    const publishers = instances.map((instance, i) => new Publisher(i + 1, instance, room));
    let target = Number.POSITIVE_INFINITY;
    const acked = (): number => allAcks(publishers).length;
    const publishing = Promise.all(publishers.map((publisher) => publisher.run(() => acked() >= target)));
    let killedAt = Number.POSITIVE_INFINITY;
    try {
      await waitUntil("150 publications are acknowledged", () => acked() >= 150, 30_000);
      natsDown = true;
      await nats.kill("SIGKILL");
      killedAt = performance.now();
      await waitUntil("every publisher is refused", () => publishers.every((p) => p.refused >= 1), 10_000);
      // Never a false ok, on any instance, for rooms with and without history.
      for (const instance of instances) {
        for (const target of ["chat:elsewhere", "plain"]) {
          const reply = await api(instance, "/api/publish", { room: target, data: "during" });
          assert.equal(reply.status, 503, JSON.stringify(reply.body));
          assert.equal((reply.body as { error?: { code?: unknown } }).error?.code, "unavailable");
        }
      }
      await nats.restart({ wipe });
      natsDown = false;
      target = acked() + 300;
    } finally {
      if (target === Number.POSITIVE_INFINITY) target = 0;
      await publishing;
    }
    for (const publisher of publishers) {
      assert.deepEqual(publisher.unexpected, []);
      assert.deepEqual(publisher.failures, [], "the HTTP API always answered");
    }
    return { acks: allAcks(publishers), killedAt };
  }

  test("with its store kept: history survives, and every subscriber gets every acknowledged message once, in order, or is told of a lost tail", async (t) => {
    const room = `chat:kept-${Date.now()}`;
    const group = await subscribeMany(room, 60);
    const start = group[0]?.subscribed[0];
    assert.ok(start?.epoch !== undefined && start.offset !== undefined);
    const { acks, killedAt } = await trafficAcrossAnOutage(room, false);

    // Acknowledged long before the kill, so flushed to the store: all still in history after the restart.
    const first = start.offset;
    const early = acks.filter((ack) => ack.epoch === start.epoch && ack.offset <= first + 100);
    assert.equal(early.length, 100);
    const history = await api(
      instances[1] as CrierInstance,
      `/api/history?room=${encodeURIComponent(room)}&limit=10000`,
    );
    assert.equal(history.status, 200, JSON.stringify(history.body));
    const body = history.body as { epoch: string; messages: Array<{ offset: number; data: unknown }> };
    const stored = new Map(body.messages.map((m) => [m.offset, m.data]));
    for (const ack of early)
      assert.deepEqual(stored.get(ack.offset), { p: ack.publisher, s: ack.seq }, "history survived");
    assert.deepEqual(
      acks.filter((ack) => ack.sentAt >= killedAt && ack.answeredAt < killedAt),
      [],
    );
    const end = await roomPosition(instances[1] as CrierInstance, room);
    await waitUntil(
      `every subscriber has offset ${end.offset} of epoch ${end.epoch}`,
      () =>
        group.every(
          (s) => s.subscription.position?.epoch === end.epoch && s.subscription.position.offset === end.offset,
        ),
      30_000,
    );
    const index = ackIndex(acks);
    const problems: string[] = [];
    for (const [i, subscriber] of group.entries()) {
      const problem = sequenceProblem(subscriber.received);
      if (problem !== undefined) problems.push(`subscriber ${i}: ${problem}`);
      // Kept epoch: every acknowledged message, once, in order; if nats-server lost its unflushed
      // tail, a new epoch, which clients are told of (closed with 4504, then recovered: false).
      if (end.epoch === start.epoch) {
        const gap = contiguityProblem(subscriber.received, start.offset, end.offset, start.epoch, index);
        if (gap !== undefined) problems.push(`subscriber ${i}: ${gap}`);
        if (subscriber.closes.length > 0) problems.push(`subscriber ${i} was disconnected: ${subscriber.closes}`);
      } else if (!subscriber.subscribed.some((info) => info.epoch === end.epoch && !info.recovered)) {
        problems.push(`subscriber ${i} moved to a new epoch without being told recovered: false`);
      }
    }
    assertNoProblems(problems, "subscribers lost, reordered or were misled about messages");
    t.diagnostic(
      `store kept: ${group.length} subscribers, ${acks.length} acknowledged, room at ${end.offset}, ` +
        `${end.epoch === start.epoch ? "same epoch" : "new epoch (unflushed tail lost)"}`,
    );
  });

  test("with its store lost: a new epoch, and every subscriber either has every acknowledged message or is told recovered: false", async (t) => {
    const room = `chat:lost-${Date.now()}`;
    const group = await subscribeMany(room, 60);
    const start = group[0]?.subscribed[0];
    assert.ok(start?.epoch !== undefined && start.offset !== undefined);
    const { acks } = await trafficAcrossAnOutage(room, true);

    const end = await roomPosition(instances[1] as CrierInstance, room);
    assert.notEqual(end.epoch, start.epoch, "NATS came back empty: a new epoch");
    const fresh = acks.filter((ack) => ack.epoch !== start.epoch);
    assert.ok(fresh.length > 0);
    for (const ack of fresh) assert.equal(ack.epoch, end.epoch, "one new epoch");
    await waitUntil(
      `every subscriber is at offset ${end.offset} of the new epoch`,
      () =>
        group.every(
          (s) => s.subscription.position?.epoch === end.epoch && s.subscription.position.offset === end.offset,
        ),
      30_000,
    );
    const problems: string[] = [];
    let toldLost = 0;
    for (const [i, subscriber] of group.entries()) {
      const sequence = sequenceProblem(subscriber.received);
      if (sequence !== undefined) problems.push(`subscriber ${i}: ${sequence}`);
      if (subscriber.subscribed.some((info) => info.epoch === end.epoch && !info.recovered)) toldLost++;
      else problems.push(`subscriber ${i} moved to the new epoch without being told recovered: false`);
      // Only closed to be told so (4504), never dropped otherwise.
      if (subscriber.closes.some((code) => code !== 4504))
        problems.push(`subscriber ${i} closed: ${subscriber.closes}`);
    }
    assertNoProblems(problems, "subscribers were misled about what they missed");
    t.diagnostic(`store lost: ${group.length} subscribers, ${toldLost} told recovered: false`);
  });
});

describe("crier serve --nats refuses what it cannot do, saying why", () => {
  test("an unreachable NATS at start names the key and the reason", async () => {
    const port = await freePort();
    const result = await runCli(["serve", "--port", "0", "--nats", `nats://127.0.0.1:${port}`]);
    assert.notEqual(result.code, 0);
    assert.match(
      result.stderr,
      new RegExp(`cannot reach NATS at nats://127\\.0\\.0\\.1:${port} \\(the \`nats\` setting\\)`),
    );
    assert.match(result.stderr, /connection refused/);
  });

  test("a malformed URL is a configuration error naming the key", async () => {
    const result = await runCli(["serve", "--nats", "nats://127.0.0.1:99999"]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /config key "nats" from --nats: server '127\.0\.0\.1:99999' is not HOST:PORT/);
    const env = await runCli(["serve"], { env: { CRIER_NATS_URL: "http://user:secret@127.0.0.1:4222" } });
    assert.match(env.stderr, /config key "nats" from CRIER_NATS_URL: not a nats:\/\/ or tls:\/\/ URL/);
    assert.match(env.stderr, /got "http:\/\/\*\*\*@127\.0\.0\.1:4222"/);
    assert.doesNotMatch(env.stderr, /secret/, "credentials are not echoed");
  });

  test("nats with redis and a namespace that keeps history is refused, saying what to configure instead", async () => {
    const nats = await startNats();
    const dir = await mkdtemp(join(tmpdir(), "crier-nats-refuse-"));
    try {
      const config = join(dir, "crier.json");
      await writeFile(config, JSON.stringify({ namespaces: { chat: { history: { size: 10, ttl: "1m" } } } }));
      const result = await runCli([
        "serve",
        "--port",
        "0",
        "--config",
        config,
        "--nats",
        nats.url,
        "--redis",
        "redis://127.0.0.1:6379",
      ]);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /nats and redis are both set and a namespace keeps history/);
      assert.match(result.stderr, /Remove redis .* or remove nats/);
    } finally {
      await nats.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
