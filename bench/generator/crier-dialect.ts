// crier's protocol for the generator (docs/protocol.md): `connect` (with a
// token when the connection has a user), `subscribe` with ids, publishes and
// sends without ids (no ack: the cheapest path), `pong` for every `ping`.

import type { ConnectionEvents, Dialect } from "./dialect.js";
import { Waiters } from "./dialect.js";
import type { RawWs } from "./raw-ws.js";
import { encodeClientFrame } from "./raw-ws.js";
import type { ConnSpec } from "./spec.js";

const PONG = encodeClientFrame('{"op":"pong"}');
/** `connected` may come without an id: it is waited for under this one. */
const CONNECT_ID = 0;

interface Reply {
  op?: unknown;
  id?: unknown;
  code?: unknown;
  message?: unknown;
}

export const crierDialect: Dialect = {
  path: "/ws",

  async setup(ws: RawWs, spec: ConnSpec, events: ConnectionEvents): Promise<void> {
    const waiters = new Waiters();
    ws.onControl = (text) => {
      let reply: Reply;
      try {
        reply = JSON.parse(text) as Reply;
      } catch {
        events.error(`unparsable frame: ${text.slice(0, 80)}`);
        return;
      }
      const id = typeof reply.id === "number" ? reply.id : undefined;
      switch (reply.op) {
        case "ping":
          ws.send(PONG);
          return;
        case "connected":
          waiters.settle(CONNECT_ID);
          return;
        case "subscribed":
          if (id !== undefined) waiters.settle(id);
          return;
        case "error": {
          const message = `${String(reply.code)}: ${String(reply.message)}`;
          if (!waiters.settle(id ?? CONNECT_ID, new Error(message))) events.error(message);
          return;
        }
        default:
          return;
      }
    };
    ws.onClose = (code) => waiters.failAll(new Error(`closed with ${code}`));
    await ws.open();
    const connected = waiters.wait(CONNECT_ID);
    ws.sendText(JSON.stringify(spec.token === undefined ? { op: "connect" } : { op: "connect", token: spec.token }));
    await connected;
    // Subscribes are pipelined: the server runs them in order and answers each.
    const subscribed = spec.rooms.map((room, index) => {
      const done = waiters.wait(index + 1);
      ws.sendText(JSON.stringify({ op: "subscribe", room, id: index + 1 }));
      return done;
    });
    await Promise.all(subscribed);
  },

  publish(room: string, payloadJson: string): Buffer {
    return encodeClientFrame(`{"op":"publish","room":${JSON.stringify(room)},"data":${payloadJson}}`);
  },

  send(user: string, payloadJson: string): Buffer {
    return encodeClientFrame(`{"op":"send","user":${JSON.stringify(user)},"data":${payloadJson}}`);
  },
};
