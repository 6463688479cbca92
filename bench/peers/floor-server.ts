// The floor: the least a Node.js server can spend to fan room messages out
// over WebSockets through Redis, against which crier's and Socket.IO's costs
// per delivery can be read. It is not a server anyone should run: no auth, no
// validation, no acks, no history, no pings, no back-pressure. It speaks just
// enough of crier's protocol for the bench's generator (connect, subscribe,
// publish, as bench/generator/crier-dialect.ts sends them), keeps one Redis
// channel per room like crier, and for each message from Redis builds one
// WebSocket frame and writes it to each local member's socket as it is, with
// net.Socket#write: one write(2) per delivery, nothing else per delivery.
//
//   node --import tsx bench/peers/floor-server.ts --port 3000 --redis redis://127.0.0.1:6379

import { createServer } from "node:http";
import type { Socket } from "node:net";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { type RawData, WebSocketServer } from "ws";
import { redisReady } from "./redis-ready.js";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "3000" },
    host: { type: "string", default: "127.0.0.1" },
    redis: { type: "string", default: "redis://127.0.0.1:6379" },
  },
});

const CHANNEL_PREFIX = "floor:";
const pub = new Redis(values.redis);
const sub = new Redis(values.redis);
/** Local members' raw sockets per room. */
const rooms = new Map<string, Set<Socket>>();
let ready = false;

/** A complete unmasked text frame around `payload` (server frames are never masked). */
function frame(payload: Buffer): Buffer {
  const length = payload.length;
  const headerLength = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  const out = Buffer.allocUnsafe(headerLength + length);
  out[0] = 0x81;
  if (length < 126) out[1] = length;
  else if (length < 65_536) {
    out[1] = 126;
    out.writeUInt16BE(length, 2);
  } else {
    out[1] = 127;
    out.writeBigUInt64BE(BigInt(length), 2);
  }
  payload.copy(out, headerLength);
  return out;
}

sub.on("messageBuffer", (channel: Buffer, message: Buffer) => {
  const members = rooms.get(channel.toString("latin1").slice(CHANNEL_PREFIX.length));
  if (members === undefined) return;
  const bytes = frame(message);
  for (const socket of members) socket.write(bytes);
});

interface Command {
  op?: unknown;
  id?: unknown;
  room?: unknown;
  data?: unknown;
}

const http = createServer((request, response) => {
  response.writeHead(request.url === "/readyz" && ready ? 200 : request.url === "/readyz" ? 503 : 404).end();
});
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

http.on("upgrade", (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, (ws) => {
    const raw = socket as Socket;
    const joined: Set<Socket>[] = [];
    ws.on("message", (data: RawData) => {
      const command = JSON.parse(String(data)) as Command;
      switch (command.op) {
        case "connect":
          ws.send('{"op":"connected"}');
          return;
        case "subscribe": {
          const room = String(command.room);
          let members = rooms.get(room);
          const first = members === undefined;
          if (members === undefined) {
            members = new Set();
            rooms.set(room, members);
          }
          members.add(raw);
          joined.push(members);
          const reply = `{"op":"subscribed","room":${JSON.stringify(room)},"id":${Number(command.id)}}`;
          if (!first) {
            ws.send(reply);
            return;
          }
          sub.subscribe(CHANNEL_PREFIX + room).then(
            () => ws.send(reply),
            (error: Error) => ws.close(1011, error.message),
          );
          return;
        }
        case "publish": {
          const room = String(command.room);
          const message = `{"op":"message","room":${JSON.stringify(room)},"data":${JSON.stringify(command.data)}}`;
          pub.publish(CHANNEL_PREFIX + room, message).catch((error: Error) => ws.close(1011, error.message));
          return;
        }
        default:
          return;
      }
    });
    ws.on("close", () => {
      for (const members of joined) members.delete(raw);
    });
  });
});

await redisReady([pub, sub]);
http.listen(Number(values.port), values.host, () => {
  ready = true;
});

const shutdown = (): void => {
  http.close();
  for (const client of wss.clients) client.terminate();
  pub.disconnect();
  sub.disconnect();
  setTimeout(() => process.exit(0), 500).unref();
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
