// `chat`: many mid-sized rooms across two instances, a publisher in each room.

import { roomsPlan } from "./rooms.js";
import { option, placement, type Scenario } from "./scenario.js";

export const chat: Scenario = {
  name: "chat",
  about: "2 instances, 2000 subscribers in 20 rooms of 100 (split across instances), 20 publishers, 100-byte payloads",
  defaults: { instances: 2, subscribers: 2000, rooms: 20, publishers: 20, rate: 500, payload: 100 },
  build: (options) =>
    roomsPlan(
      options,
      (members) =>
        `${placement(options)}, ${option(options, "subscribers")} subscribers in ` +
        `${option(options, "rooms")} rooms of ${members}, ${option(options, "publishers")} publishers, ` +
        `${option(options, "payload")}-byte payloads, ${option(options, "rate")} publishes/s`,
    ),
};
