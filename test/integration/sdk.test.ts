// The SDK against a real crier process: connect, subscribe, publish, send, and
// reconnect + resubscribe + recovery when the server is restarted under it.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { WebSocket } from "ws";
import { CrierClient, type MessagePush, ProtocolError, type Subscription } from "../../packages/client/src/index.js";
import { msgpackCodec } from "../../packages/client/src/msgpack.js";
import { Collector } from "../support/collector.js";
import { api, type ConfigFile, type CrierInstance, startCrier, writeConfig } from "../support/crier.js";
import { dataAfterLeaving } from "../support/sdk-barrier.js";
import { JWT_SECRET, token } from "../support/tokens.js";

/** Collects a subscription's messages and lets a test wait for a count. */
class Inbox {
  readonly messages: MessagePush[] = [];
  private waiters: { count: number; resolve: () => void }[] = [];
  readonly handler = (message: MessagePush): void => {
    this.messages.push(message);
    this.waiters = this.waiters.filter((waiter) => {
      if (this.messages.length < waiter.count) return true;
      waiter.resolve();
      return false;
    });
  };

  async waitFor(count: number, timeoutMs = 10_000): Promise<void> {
    if (this.messages.length >= count) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.waiters.push({ count, resolve })),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`only ${this.messages.length} of ${count} messages after ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  }

  data(): unknown[] {
    return this.messages.map((message) => message.data);
  }
}

describe("SDK against a real server", () => {
  let config: ConfigFile | undefined;
  let server: CrierInstance;

  before(async () => {
    config = await writeConfig({
      jwt: { secret: JWT_SECRET },
      allowAnonymous: true,
      namespaces: { chat: { history: { size: 100, ttl: "10m" } } },
    });
    server = await startCrier({ args: ["--config", config.path] });
  });

  after(async () => {
    await server.stop();
    await config?.remove();
  });

  test("connect, subscribe, publish, and a send to the user", async () => {
    const client = new CrierClient(server.url, { WebSocket, token: await token({ sub: "sdk-user" }) });
    try {
      const info = await client.connect();
      assert.equal(info.user, "sdk-user");
      const inbox = new Inbox();
      const subscription = client.subscribe("lobby", inbox.handler);
      assert.equal((await subscription.ready).recovered, false);
      await client.publish("lobby", { text: "hello" });
      await inbox.waitFor(1);
      assert.deepEqual(inbox.data(), [{ text: "hello" }]);
      const direct = new Promise((resolve) => client.once("direct", resolve));
      assert.equal((await api(server, "/api/send", { user: "sdk-user", data: "psst" })).status, 200);
      assert.deepEqual(await direct, { op: "direct", data: "psst" });
    } finally {
      client.close();
    }
  });

  test("over MessagePack (crier.v1.msgpack): the same API, binary frames, a JSON client in the same room", async () => {
    const client = new CrierClient(server.url, {
      WebSocket,
      codec: msgpackCodec,
      token: await token({ sub: "packed-user" }),
    });
    const jsonClient = new CrierClient(server.url, { WebSocket });
    try {
      const info = await client.connect();
      assert.equal(info.user, "packed-user");
      await jsonClient.connect();
      const packed = new Inbox();
      const plain = new Inbox();
      await client.subscribe("chat:packed", packed.handler).ready;
      await jsonClient.subscribe("chat:packed", plain.handler).ready;
      const data = { text: "héllo", n: 3, big: 2 ** 40, list: [1, null, true], nested: { a: "b" } };
      const first = await client.publish("chat:packed", data);
      assert.equal(typeof first.offset, "number");
      await jsonClient.publish("chat:packed", "from json");
      await packed.waitFor(2);
      await plain.waitFor(2);
      assert.deepEqual(packed.data(), [data, "from json"]);
      assert.deepEqual(plain.data(), [data, "from json"]);
      assert.deepEqual(
        packed.messages.map((message) => message.offset),
        plain.messages.map((message) => message.offset),
      );
      const history = await client.history("chat:packed");
      assert.deepEqual(
        history.messages.map((message) => message.data),
        [data, "from json"],
      );
      const direct = new Promise((resolve) => client.once("direct", resolve));
      assert.equal((await api(server, "/api/send", { user: "packed-user", data: { psst: 1 } })).status, 200);
      assert.deepEqual(await direct, { op: "direct", data: { psst: 1 } });
    } finally {
      client.close();
      jsonClient.close();
    }
  });

  test("a client set up for MessagePack must offer its subprotocol", () => {
    assert.throws(
      () => new CrierClient(server.url, { WebSocket, codec: msgpackCodec, protocols: ["crier.v1.json"] }),
      /must include crier\.v1\.msgpack/,
    );
  });

  test("publish in a room with history returns the offset", async () => {
    const client = new CrierClient(server.url, { WebSocket });
    try {
      await client.connect();
      await client.subscribe("chat:offsets", () => {}).ready;
      const first = await client.publish("chat:offsets", 1);
      const second = await client.publish("chat:offsets", 2);
      assert.equal(typeof first.epoch, "string");
      assert.equal(second.offset, (first.offset ?? 0) + 1);
    } finally {
      client.close();
    }
  });

  test("the server is restarted under the SDK: it reconnects and resubscribes on its own", async () => {
    const client = new CrierClient(server.url, { WebSocket, minReconnectDelayMs: 50, maxReconnectDelayMs: 500 });
    try {
      await client.connect();
      const inbox = new Inbox();
      const subscription = client.subscribe("restart-room", inbox.handler);
      await subscription.ready;
      assert.equal((await api(server, "/api/publish", { room: "restart-room", data: "before" })).status, 200);
      await inbox.waitFor(1);

      const disconnected = new Promise<{ code: number; willReconnect: boolean }>((resolve) =>
        client.once("disconnected", resolve),
      );
      const resubscribed = new Promise<{ recovered: boolean }>((resolve) => subscription.once("resubscribed", resolve));
      const reconnected = new Promise((resolve) => client.once("connected", resolve));
      await server.restart();
      const gone = await disconnected;
      assert.equal(gone.code, 4500, "a graceful restart closes clients with 4500");
      assert.equal(gone.willReconnect, true);
      await reconnected;
      await resubscribed;

      assert.equal((await api(server, "/api/publish", { room: "restart-room", data: "after" })).status, 200);
      await inbox.waitFor(2);
      assert.deepEqual(inbox.data(), ["before", "after"]);
    } finally {
      client.close();
    }
  });

  test("a JWT subs claim arrives as a Subscription; a reconnect resumes it without duplicates or gaps", async () => {
    const room = "chat:subs-sid";
    let release: () => void = () => {};
    let gate: Promise<void> = Promise.resolve();
    const tokens = { issued: 0 };
    const client = new CrierClient(server.url, {
      WebSocket,
      minReconnectDelayMs: 20,
      maxReconnectDelayMs: 100,
      token: async () => {
        await gate;
        tokens.issued++;
        return token({ sub: "sid", subs: [room] });
      },
    });
    const errors: Error[] = [];
    client.on("error", (error) => errors.push(error));
    const announced: Subscription[] = [];
    client.on("subscription", (subscription) => announced.push(subscription));
    const got = new Collector<MessagePush>((items) => JSON.stringify(items.map((m) => m.data)));
    try {
      await client.connect();
      const subscription = client.getSubscription(room);
      assert.ok(subscription?.serverSide, "found by getSubscription at once");
      assert.deepEqual(announced, [subscription]);
      subscription.on("message", (message) => got.push(message));
      await subscription.ready;
      for (const data of [1, 2]) await api(server, "/api/publish", { room, data });
      await got.waitFor(2);

      // The server ends the connection (token expired); the client asks for a new token,
      // which the test holds while more is published, then reconnects.
      gate = new Promise((resolve) => {
        release = resolve;
      });
      const resubscribed = new Promise<{ recovered: boolean }>((resolve) => subscription.once("resubscribed", resolve));
      const dropped = new Promise<{ code: number; willReconnect: boolean }>((resolve) =>
        client.once("disconnected", resolve),
      );
      assert.equal((await api(server, "/api/disconnect", { user: "sid", code: 4005 })).status, 200);
      assert.deepEqual(await dropped, { code: 4005, reason: "disconnected by the server", willReconnect: true });
      for (const data of [3, 4, 5]) await api(server, "/api/publish", { room, data });
      release();
      assert.equal((await resubscribed).recovered, true);
      await api(server, "/api/publish", { room, data: 6 });
      await got.waitFor(6);
      assert.deepEqual(
        got.items.map((message) => message.data),
        [1, 2, 3, 4, 5, 6],
      );
      const offsets = got.items.map((message) => message.offset ?? -1);
      assert.deepEqual(
        offsets,
        offsets.map((_, i) => (offsets[0] ?? 0) + i),
        "contiguous offsets",
      );
      assert.equal(tokens.issued, 2);
      assert.deepEqual(announced, [subscription], "the same Subscription, not announced again");
      assert.deepEqual(errors, [], "no refused subscribe, no stray error");
    } finally {
      client.close();
    }
  });

  test("unsubscribe() of a server-side subscription stops its messages", async () => {
    const room = "chat:subs-tess";
    const client = new CrierClient(server.url, { WebSocket, token: await token({ sub: "tess", subs: [room] }) });
    try {
      await client.connect();
      const subscription = client.getSubscription(room);
      assert.ok(subscription !== undefined);
      const got = new Collector<MessagePush>();
      client.on("message", (message) => got.push(message));
      await subscription.ready;
      await api(server, "/api/publish", { room, data: "before" });
      await got.waitFor(1);
      const publish = (target: string, data: string) => api(server, "/api/publish", { room: target, data });
      const data = await dataAfterLeaving(client, subscription, "chat:barrier-tess", publish, got);
      assert.deepEqual(data, ["before", "barrier"]);
      assert.equal(client.getSubscription(room), undefined);
    } finally {
      client.close();
    }
  });

  test("rpc on a server without an rpc proxy rejects with bad_request", async () => {
    const client = new CrierClient(server.url, { WebSocket });
    try {
      await client.connect();
      await assert.rejects(
        client.rpc("whoami"),
        (error) => error instanceof ProtocolError && error.code === "bad_request",
      );
    } finally {
      client.close();
    }
  });

  test("a crashed server (SIGKILL) comes back: the SDK recovers, and is told recovered: false when history was lost", async () => {
    const client = new CrierClient(server.url, { WebSocket, minReconnectDelayMs: 50, maxReconnectDelayMs: 500 });
    try {
      await client.connect();
      const inbox = new Inbox();
      const subscription = client.subscribe("chat:crash", inbox.handler);
      await subscription.ready;
      await api(server, "/api/publish", { room: "chat:crash", data: 1 });
      await inbox.waitFor(1);

      const resubscribed = new Promise<{ recovered: boolean }>((resolve) => subscription.once("resubscribed", resolve));
      await server.kill("SIGKILL");
      await server.restart();
      // The embedded broker's history died with the process: a new epoch.
      assert.equal((await resubscribed).recovered, false);
      await api(server, "/api/publish", { room: "chat:crash", data: 2 });
      await inbox.waitFor(2);
      assert.deepEqual(inbox.data(), [1, 2]);
    } finally {
      client.close();
    }
  });
});
