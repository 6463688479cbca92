// Socket.IO 4 over a raw WebSocket (engine.io protocol 4, websocket transport
// only): the server's open packet `0{...}`, `40` to connect to the main
// namespace (with `{"user":...}` as auth when the connection has a user),
// `42<id>["join",room]` acked by `43<id>[...]`, events `42["publish",...]` and
// `42["send",...]`, and `3` for every `2` (engine.io ping).

import type { ConnectionEvents, Dialect } from "./dialect.js";
import { Waiters } from "./dialect.js";
import type { RawWs } from "./raw-ws.js";
import { encodeClientFrame } from "./raw-ws.js";
import type { ConnSpec } from "./spec.js";

const PONG = encodeClientFrame("3");
const OPEN_ID = -1;
const CONNECT_ID = 0;

export const socketioDialect: Dialect = {
  path: "/socket.io/?EIO=4&transport=websocket",

  async setup(ws: RawWs, spec: ConnSpec, events: ConnectionEvents): Promise<void> {
    const waiters = new Waiters();
    ws.onControl = (text) => {
      if (text === "2") {
        ws.send(PONG);
        return;
      }
      if (text.startsWith("0{")) {
        waiters.settle(OPEN_ID);
        return;
      }
      if (text.startsWith("40")) {
        waiters.settle(CONNECT_ID);
        return;
      }
      if (text.startsWith("44")) {
        if (!waiters.settle(CONNECT_ID, new Error(`connect refused: ${text}`))) events.error(text);
        return;
      }
      if (text.startsWith("43")) {
        const id = Number.parseInt(text.slice(2), 10);
        if (Number.isInteger(id)) waiters.settle(id);
        return;
      }
      if (text.startsWith("41") || text === "1") events.error(`server closed the session: ${text}`);
    };
    ws.onClose = (code) => waiters.failAll(new Error(`closed with ${code}`));
    const opened = waiters.wait(OPEN_ID);
    await ws.open();
    await opened;
    const connected = waiters.wait(CONNECT_ID);
    ws.sendText(spec.user === undefined ? "40" : `40${JSON.stringify({ user: spec.user })}`);
    await connected;
    const joined = spec.rooms.map((room, index) => {
      const done = waiters.wait(index + 1);
      ws.sendText(`42${index + 1}${JSON.stringify(["join", room])}`);
      return done;
    });
    await Promise.all(joined);
  },

  publish(room: string, payloadJson: string): Buffer {
    return encodeClientFrame(`42["publish",${JSON.stringify(room)},${payloadJson}]`);
  },

  send(user: string, payloadJson: string): Buffer {
    return encodeClientFrame(`42["send",${JSON.stringify(user)},${payloadJson}]`);
  },
};
