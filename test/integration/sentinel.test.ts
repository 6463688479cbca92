// crier behind Redis Sentinel (redis+sentinel://): it finds the master through
// the sentinel, and when the master dies and the sentinel promotes the
// replica, it follows: clients stay connected and messages flow again through
// the new master. Real processes throughout: master, replica, sentinel, crier.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import { WebSocket } from "ws";
import { track } from "../support/children.js";
import { api, type CrierInstance, startCrier } from "../support/crier.js";
import { freePort, type RedisProcess, startRedis } from "../support/redis.js";
import { waitUntil } from "../support/wait.js";
import { type Closed, TestClient } from "../support/ws-client.js";

const MASTER_NAME = "crier-test-master";

interface Sentinel {
  port: number;
  /** Output lines so far, for waiting on events (+monitor, +slave, +switch-master). */
  output(): string;
  stop(): Promise<void>;
}

/** A sentinel monitoring the master at `masterPort`, quorum 1, quick to call it down. */
async function startSentinel(masterPort: number): Promise<Sentinel> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), "crier-sentinel-"));
  const config = join(dir, "sentinel.conf");
  // The sentinel rewrites its config file as it learns: it must be its own, writable.
  await writeFile(
    config,
    [
      `port ${port}`,
      "bind 127.0.0.1",
      `dir ${dir}`,
      `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${masterPort} 1`,
      `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
      `sentinel failover-timeout ${MASTER_NAME} 5000`,
      "",
    ].join("\n"),
  );
  const child: ChildProcess = spawn("redis-server", [config, "--sentinel"], { stdio: ["ignore", "pipe", "pipe"] });
  track(child);
  let output = "";
  const append = (chunk: Buffer): void => {
    output = (output + chunk.toString("utf8")).slice(-20_000);
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  const sentinel: Sentinel = {
    port,
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGKILL");
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  await waitUntil("the sentinel monitors the master", () => output.includes(`+monitor master ${MASTER_NAME}`), 10_000);
  return sentinel;
}

/** Where the sentinel says the master is now. */
async function masterPort(sentinel: Sentinel): Promise<number | undefined> {
  const client = new Redis(sentinel.port, "127.0.0.1", { lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await client.connect();
    const reply = (await client.call("SENTINEL", "get-master-addr-by-name", MASTER_NAME)) as string[] | null;
    return reply === null ? undefined : Number(reply[1]);
  } finally {
    client.disconnect();
  }
}

describe("Redis Sentinel", () => {
  let master: RedisProcess;
  let replica: RedisProcess;
  let sentinel: Sentinel;
  let crier: CrierInstance;

  before(async () => {
    master = await startRedis();
    replica = await startRedis({ args: ["--replicaof", "127.0.0.1", String(master.port)] });
    const replicaClient = new Redis(replica.port, "127.0.0.1");
    try {
      await waitUntil(
        "the replica is in sync with the master",
        async () => /master_link_status:up/.test(await replicaClient.info("replication")),
        10_000,
      );
    } finally {
      replicaClient.disconnect();
    }
    sentinel = await startSentinel(master.port);
    // A failover needs a replica to promote: wait until the sentinel has found it.
    await waitUntil("the sentinel knows the replica", () => sentinel.output().includes("+slave slave"), 15_000);
    crier = await startCrier({ args: ["--redis", `redis+sentinel://127.0.0.1:${sentinel.port}/${MASTER_NAME}`] });
  });

  after(async () => {
    await crier?.stop();
    await sentinel?.stop();
    await replica?.stop();
    await master?.stop();
  });

  test("crier follows a failover: the client stays connected and is reached through the promoted replica", async () => {
    const client = await TestClient.connect(crier.url);
    // Every close this connection sees, from now through the whole failover.
    const closes: Closed[] = [];
    void client.closed.then((closed) => closes.push(closed));
    assert.equal((await client.call({ op: "subscribe", room: "alerts" })).op, "subscribed");
    assert.equal((await api(crier, "/api/publish", { room: "alerts", data: "before" })).status, 200);
    const before = await client.next("message");
    assert.equal(before.op === "message" ? before.data : undefined, "before");
    assert.equal(await masterPort(sentinel), master.port);

    await master.kill("SIGKILL");
    await waitUntil(
      "the sentinel has promoted the replica",
      async () => (await masterPort(sentinel)) === replica.port,
      30_000,
    );
    // Publishes are refused (503) until crier has reconnected to the new master and resubscribed.
    await waitUntil(
      "a publish through crier succeeds again",
      async () => (await api(crier, "/api/publish", { room: "alerts", data: "after" })).status === 200,
      30_000,
    );
    const after = await client.seen(
      (frame) => frame.op === "message" && frame.data === "after",
      "the message published after the failover",
      10_000,
    );
    assert.equal(after.op, "message");
    const ready = await fetch(`${crier.httpUrl}/readyz`);
    assert.equal(ready.status, 200);
    // The client never saw its connection close: a reply on the same connection after
    // the failover is the barrier, since a close would have come before it.
    assert.equal((await client.call({ op: "subscribe", room: "after-failover" })).op, "subscribed");
    assert.deepEqual(closes, [], "the connection was closed during the failover");
    assert.equal(client.ws.readyState, WebSocket.OPEN);
    client.close();
  });
});
