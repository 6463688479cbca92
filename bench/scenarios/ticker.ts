// `ticker`: one big room with a high publish rate, so every socket receives
// hundreds of messages per second: the cost of the per-socket write path.

import { roomsPlan } from "./rooms.js";
import { option, placement, type Scenario } from "./scenario.js";

export const ticker: Scenario = {
  name: "ticker",
  about: "200 subscribers in one room, 300 publishes/s from 2 publishers: each socket gets hundreds of messages/s",
  defaults: { instances: 1, subscribers: 200, rooms: 1, publishers: 2, rate: 300, payload: 100 },
  build: (options) =>
    roomsPlan(
      options,
      () =>
        `${placement(options)}, ${option(options, "subscribers")} subscribers in ` +
        `${option(options, "rooms")} room(s), ${option(options, "publishers")} publishers, ` +
        `${option(options, "payload")}-byte payloads, ${option(options, "rate")} publishes/s ` +
        `(${option(options, "rate") / option(options, "rooms")} messages/s per socket)`,
    ),
};
