// The peer crier is compared with: a Socket.IO 4 server with the Redis
// adapter, doing what a chat backend built on it does. Events (all without
// acks except join):
//   join(room, ack)          socket.join(room)
//   publish(room, data)      io.to(room).emit("message", room, data)   (the sender gets it too, as in crier)
//   send(user, data)         io.to("user:" + user).emit("direct", data)
// A connection with `auth.user` joins its user room. GET /readyz answers 200
// once the Redis clients are ready.
//
//   node --import tsx bench/peers/socketio-server.ts --port 3000 --redis redis://127.0.0.1:6379 [--adapter classic|sharded]

import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { Redis } from "ioredis";
import { Server } from "socket.io";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "3000" },
    host: { type: "string", default: "127.0.0.1" },
    redis: { type: "string", default: "redis://127.0.0.1:6379" },
    adapter: { type: "string", default: "classic" },
  },
});
if (values.adapter !== "classic" && values.adapter !== "sharded") {
  process.stderr.write(`socketio-server: --adapter must be classic or sharded, not ${values.adapter}\n`);
  process.exit(2);
}

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

await Promise.all(
  [pubClient, subClient].map(
    (client) =>
      new Promise<void>((resolve, reject) => {
        if (client.status === "ready") resolve();
        client.once("ready", () => resolve());
        client.once("error", reject);
      }),
  ),
);
http.listen(Number(values.port), values.host, () => {
  ready = true;
});

const shutdown = (): void => {
  io.close();
  pubClient.disconnect();
  subClient.disconnect();
  setTimeout(() => process.exit(0), 500).unref();
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
