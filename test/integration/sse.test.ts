// The HTTP fallback across a cluster: two real `crier serve` processes on one
// real redis-server. A client streams from instance A (GET /sse) and POSTs its
// commands to instance B's /emulation, which hands them to A over the
// backplane; it meets WebSocket clients in the same rooms, pings and pongs,
// and ends like a WebSocket would (4502, 4503, leave events on a dropped stream).
// The same again through a real nginx configured as docs/deployment.md says,
// which sends each request to whichever instance it likes.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { api, type ConfigFile, type CrierInstance, startCrier, writeConfig } from "../support/crier.js";
import { type NginxProcess, startNginx } from "../support/nginx.js";
import { type RedisProcess, startRedis } from "../support/redis.js";
import { SseTestClient } from "../support/sse-client.js";
import { JWT_SECRET } from "../support/tokens.js";
import { waitUntil } from "../support/wait.js";
import { TestClient } from "../support/ws-client.js";

/** Short pings, so 4502 comes quickly; a small outbound bound, so a stalled stream reaches 4503 soon. */
const CONFIG = {
  allowedOrigins: ["https://app.example.com"],
  jwt: { secret: JWT_SECRET },
  allowAnonymous: true,
  timeouts: { ping: 0.5, pong: 0.5 },
  limits: { outboundQueueBytes: 64 * 1024 },
  namespaces: { chat: { presence: true, joinLeave: true } },
};

async function sse(url: string, connect: Record<string, unknown> = {}, pong = true): Promise<SseTestClient> {
  const client = await SseTestClient.connect(url, connect, { pong });
  opened.push({ close: () => client.drop() });
  return client;
}

async function ws(instance: CrierInstance): Promise<TestClient> {
  const client = await TestClient.connect(instance.url);
  opened.push(client);
  client.ws.on("message", (data) => {
    if (String(data) === '{"op":"ping"}') client.send({ op: "pong" });
  });
  return client;
}

const opened: { close(): void }[] = [];

for (const through of ["direct", "nginx"] as const) {
  describe(`SSE + emulation across two instances on Redis (${through})`, () => {
    let redis: RedisProcess;
    let config: ConfigFile;
    let a: CrierInstance;
    let b: CrierInstance;
    let nginx: NginxProcess | undefined;
    /** Where a test's HTTP requests "to A" and "to B" go: the instances themselves, or nginx for both. */
    const at = { a: "", b: "" };

    before(async () => {
      redis = await startRedis();
      config = await writeConfig(CONFIG);
      const args = (id: string) => ["--config", config.path, "--redis", redis.url, "--node-id", id];
      [a, b] = await Promise.all([startCrier({ args: args("node-a") }), startCrier({ args: args("node-b") })]);
      if (through === "nginx") nginx = await startNginx([a.port, b.port]);
      at.a = nginx?.httpUrl ?? a.httpUrl;
      at.b = nginx?.httpUrl ?? b.httpUrl;
    });
    after(async () => {
      for (const client of opened.splice(0)) client.close();
      await nginx?.stop();
      await Promise.all([a?.stop(), b?.stop()]);
      await redis?.stop();
      await config?.remove();
    });

    test("connect over SSE: connected with an unguessable session naming the instance, then commands through the other instance", async () => {
      const client = await sse(at.a);
      const connected = client.frames[0];
      assert.equal(connected?.op, "connected");
      const node = connected?.op === "connected" ? connected.node : "";
      if (through === "direct") assert.equal(node, "node-a");
      else assert.ok(node === "node-a" || node === "node-b", `nginx sent the stream to ${node}`);
      assert.match(client.session, new RegExp(`^${node}\\.[A-Za-z0-9_-]{24}$`), "node id, a dot, 144 random bits");

      const subscribed = await client.call({ op: "subscribe", room: "lobby" }, at.b);
      assert.equal(subscribed.op, "subscribed");

      const peer = await ws(b);
      await peer.call({ op: "subscribe", room: "lobby" });
      // A publication by a WebSocket client on B reaches the SSE client on A.
      await peer.call({ op: "publish", room: "lobby", data: { from: "ws" } });
      await client.seen((f) => f.op === "message" && JSON.stringify(f.data) === '{"from":"ws"}', "the ws publication");
      // A publication POSTed to B's /emulation by the SSE client reaches both.
      const ok = await client.call({ op: "publish", room: "lobby", data: { from: "sse" } }, at.b);
      assert.equal(ok.op, "ok");
      await peer.seen((f) => f.op === "message" && JSON.stringify(f.data) === '{"from":"sse"}', "the sse publication");
      await client.seen(
        (f) => f.op === "message" && JSON.stringify(f.data) === '{"from":"sse"}',
        "its own publication",
      );
    });

    test("POSTs through either instance keep their order", async () => {
      const client = await sse(at.a);
      await client.call({ op: "subscribe", room: "ordered" }, at.a);
      for (let n = 0; n < 20; n++) {
        const via = n % 2 === 0 ? at.a : at.b;
        const posted = await client.post([{ op: "publish", room: "ordered", data: n }], via);
        assert.equal(posted.status, 204);
      }
      await waitUntil("20 messages", () => client.frames.filter((f) => f.op === "message").length === 20);
      const order = client.frames.flatMap((f) => (f.op === "message" ? [f.data] : []));
      assert.deepEqual(order, [...Array(20).keys()]);
    });

    test("an unknown session gets 404 not_found from every instance, and so does an ended one", async () => {
      for (const instance of [a, b]) {
        for (const session of ["node-a.AAAAAAAAAAAAAAAAAAAAAAAA", "node-b.nope", "nonode", "gone-node.AAAA"]) {
          const response = await fetch(`${instance.httpUrl}/emulation`, {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ session, frames: [{ op: "pong" }] }),
          });
          assert.equal(response.status, 404, `${session} via ${instance.nodeId}`);
          const body = (await response.json()) as { error: { code: string; message: string } };
          assert.equal(body.error.code, "not_found");
        }
      }
      const client = await sse(at.b);
      const session = client.session;
      client.drop();
      await client.waitClosed();
      await waitUntil(
        "the session has ended",
        async () => (await client.post([{ op: "pong" }], at.a, session)).status === 404,
      );
    });

    test("a malformed body is 400; a body over limits.maxHttpBodyBytes is 413", async () => {
      const bad = await fetch(`${at.a}/emulation`, { method: "POST", body: '{"frames":1}' });
      assert.equal(bad.status, 400);
      const big = await fetch(`${at.a}/emulation`, {
        method: "POST",
        body: JSON.stringify({ session: "x", frames: ["y".repeat(1024 * 1024)] }),
      });
      assert.equal(big.status, 413);
    });

    test("a frame over limits.maxFrameBytes in a POST closes the session with 4009, as over WebSocket", async () => {
      const client = await sse(at.a);
      const posted = await client.post([{ op: "publish", room: "lobby", data: "z".repeat(70_000) }], at.b);
      assert.equal(posted.status, 204);
      const closed = await client.waitClosed();
      assert.equal(closed.code, 4009);
    });

    test("pings arrive as events; answered through /emulation they keep the session, unanswered it ends with 4502", async () => {
      const answering = await sse(at.a);
      const silent = await sse(at.a, {}, false);
      await answering.seen((f) => f.op === "ping", "a ping");
      await silent.seen((f) => f.op === "ping", "a ping");
      const closed = await silent.waitClosed();
      assert.equal(closed.code, 4502);
      assert.deepEqual(silent.frames.at(-1), { op: "close", code: 4502, reason: "no pong within the pong timeout" });
      // Three ping intervals later the one that answered is still there.
      await waitUntil("three pings", () => answering.frames.filter((f) => f.op === "ping").length >= 3);
      const ok = await answering.call({ op: "subscribe", room: "still-here" }, at.b);
      assert.equal(ok.op, "subscribed");
    });

    test("a refused connect gets its error event, then the close event", async () => {
      const client = await SseTestClient.open(at.a, { token: "not-a-jwt" });
      opened.push({ close: () => client.drop() });
      const closed = await client.waitClosed();
      // Anonymous is allowed here; a malformed token is still refused.
      assert.equal(client.frames[0]?.op, "error");
      assert.equal(client.frames.length, 2, "the error event, then the close event");
      assert.equal(closed.code, 4003);
    });

    test("a dropped stream ends the session: presence removal and a leave event on the other instance", async () => {
      const watcher = await ws(b);
      await watcher.call({ op: "subscribe", room: "chat:room" });
      const client = await sse(at.a, { info: { name: "sse" } });
      await client.call({ op: "subscribe", room: "chat:room" }, at.b);
      const connected = client.frames[0];
      const id = connected?.op === "connected" ? connected.client : "";
      await watcher.seen((f) => f.op === "join" && f.member.client === id, "the join");
      client.drop();
      await watcher.seen((f) => f.op === "leave" && f.member.client === id, "the leave");
      const presence = await api(b, "/api/presence?room=chat:room");
      assert.ok(!JSON.stringify(presence.body).includes(id), "no presence entry left");
    });

    test("a stream that stops reading is closed with 4503 once its queue passes limits.outboundQueueBytes", async () => {
      const stalled = await sse(at.a);
      await stalled.call({ op: "subscribe", room: "firehose" }, at.b);
      stalled.pause();
      const payload = "x".repeat(16 * 1024);
      let closedAt: number | undefined;
      for (let n = 0; n < 2000 && closedAt === undefined; n++) {
        await api(b, "/api/publish", { room: "firehose", data: { n, payload } });
        if ((await stalled.post([{ op: "pong" }], at.b)).status === 404) closedAt = n;
      }
      assert.ok(closedAt !== undefined, "the session ended while the stream was stalled");
      stalled.resume();
      const closed = await stalled.waitClosed(20_000);
      assert.equal(closed.code, 4503);
    });

    test("allowedOrigins applies to /sse and /emulation, and CORS allows exactly the allowed origin", async () => {
      const query = encodeURIComponent(JSON.stringify({ op: "connect" }));
      const foreign = await fetch(`${at.a}/sse?connect=${query}`, { headers: { Origin: "https://evil.example" } });
      assert.equal(foreign.status, 403);
      const post = await fetch(`${at.a}/emulation`, {
        method: "POST",
        headers: { Origin: "https://evil.example", "Content-Type": "application/json" },
        body: '{"session":"x","frames":[]}',
      });
      assert.equal(post.status, 403);
      assert.equal(post.headers.get("access-control-allow-origin"), null);

      const preflight = await fetch(`${at.b}/emulation`, {
        method: "OPTIONS",
        headers: {
          Origin: "https://app.example.com",
          "Access-Control-Request-Method": "POST",
          "Access-Control-Request-Headers": "content-type",
        },
      });
      assert.equal(preflight.status, 204);
      assert.equal(preflight.headers.get("access-control-allow-origin"), "https://app.example.com");
      assert.equal(preflight.headers.get("access-control-allow-methods"), "POST");
      assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /content-type/i);

      const client = await SseTestClient.connect(at.a, {}, { headers: { Origin: "https://app.example.com" } });
      opened.push({ close: () => client.drop() });
      assert.equal(client.response.headers["access-control-allow-origin"], "https://app.example.com");
      assert.equal(client.response.headers["content-type"], "text/event-stream; charset=utf-8");
      assert.equal(client.response.headers["cache-control"], "no-cache");
      // nginx acts on X-Accel-Buffering itself and does not pass it on.
      if (through === "direct") assert.equal(client.response.headers["x-accel-buffering"], "no");
    });
  });
}
