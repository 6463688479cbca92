// The peer crier is compared with: a Socket.IO 4 server with the Redis
// adapter, doing what a chat backend built on it does. Events (all without
// acks except join):
//   join(room, ack)          socket.join(room)
//   publish(room, data)      io.to(room).emit("message", room, data)   (the sender gets it too, as in crier)
//   send(user, data)         io.to("user:" + user).emit("direct", data)
// A connection with `auth.user` joins its user room. GET /readyz answers 200
// once the Redis clients are ready (with --workers N: once every worker's are).
// --workers N runs N processes on the port under node:cluster, each a Socket.IO
// server with its own adapter, as Socket.IO's docs describe for WebSocket-only
// clients (no sticky sessions needed without long-polling).
//
//   node --import tsx bench/peers/socketio-server.ts --port 3000 --redis redis://127.0.0.1:6379 \
//     [--adapter classic|sharded] [--workers N]

import cluster from "node:cluster";
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { Redis } from "ioredis";
import { Server } from "socket.io";
import { redisReady } from "./redis-ready.js";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "3000" },
    host: { type: "string", default: "127.0.0.1" },
    redis: { type: "string", default: "redis://127.0.0.1:6379" },
    adapter: { type: "string", default: "classic" },
    workers: { type: "string", default: "1" },
  },
});
if (values.adapter !== "classic" && values.adapter !== "sharded") {
  process.stderr.write(`socketio-server: --adapter must be classic or sharded, not ${values.adapter}\n`);
  process.exit(2);
}
const workers = Number(values.workers);
if (!Number.isInteger(workers) || workers < 1) {
  process.stderr.write(`socketio-server: --workers must be a whole number ≥ 1, not ${values.workers}\n`);
  process.exit(2);
}
/** What a worker tells the primary once it listens, and the primary tells every worker once all do. */
const READY = "socketio-server:ready";

if (workers > 1 && cluster.isPrimary) {
  let listening = 0;
  let stopping = false;
  for (let i = 0; i < workers; i++) {
    const worker = cluster.fork();
    worker.on("message", (message: unknown) => {
      if (message !== READY || ++listening < workers) return;
      for (const each of Object.values(cluster.workers ?? {})) each?.send(READY);
    });
  }
  cluster.on("exit", (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    process.stderr.write(`socketio-server: worker ${worker.id} exited (${signal ?? code}); stopping\n`);
    process.exit(1);
  });
  const stopAll = (): void => {
    stopping = true;
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill("SIGTERM");
  };
  process.on("SIGTERM", stopAll);
  process.on("SIGINT", stopAll);
} else {
  await serve();
}

async function serve(): Promise<void> {
  const pubClient = new Redis(values.redis);
  const subClient = pubClient.duplicate();
  let ready = false;

  const http = createServer((request, response) => {
    if (request.url === "/readyz") {
      response.writeHead(ready ? 200 : 503).end(ready ? "ok" : "starting");
      return;
    }
    response.writeHead(404).end();
  });

  const io = new Server(http, {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
    adapter:
      // Classic: every instance pattern-subscribes to all broadcasts. Sharded
      // (Redis 7 SSUBSCRIBE, "dynamic"): one channel per room, like crier.
      values.adapter === "sharded"
        ? createShardedAdapter(pubClient, subClient, { subscriptionMode: "dynamic" })
        : createAdapter(pubClient, subClient),
  });

  io.on("connection", (socket) => {
    const auth = socket.handshake.auth as { user?: unknown };
    if (typeof auth.user === "string" && auth.user !== "") void socket.join(`user:${auth.user}`);
    socket.on("join", (room: unknown, ack: unknown) => {
      if (typeof room !== "string") return;
      void socket.join(room);
      if (typeof ack === "function") ack();
    });
    socket.on("publish", (room: unknown, data: unknown) => {
      if (typeof room === "string") io.to(room).emit("message", room, data);
    });
    socket.on("send", (user: unknown, data: unknown) => {
      if (typeof user === "string") io.to(`user:${user}`).emit("direct", data);
    });
  });

  await redisReady([pubClient, subClient]);
  http.listen(Number(values.port), values.host, () => {
    if (!cluster.isWorker) {
      ready = true;
      return;
    }
    process.on("message", (message: unknown) => {
      if (message === READY) ready = true;
    });
    process.send?.(READY);
  });

  const shutdown = (): void => {
    io.close();
    pubClient.disconnect();
    subClient.disconnect();
    setTimeout(() => process.exit(0), 500).unref();
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}
