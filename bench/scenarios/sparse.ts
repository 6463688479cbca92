// `sparse`: many small rooms whose members all sit on one instance. With one
// backplane channel per room an instance receives only its own rooms'
// publications; a design that broadcasts every publication to every instance
// makes each one pay for all of them.

import type { ConnSpec, PublisherSpec } from "../generator/spec.js";
import { option, placement, type Scenario } from "./scenario.js";

export const sparse: Scenario = {
  name: "sparse",
  about: "4 instances, 2000 rooms of 5 members each on one instance, a publisher per room, 1000 publishes/s",
  defaults: { instances: 4, rooms: 2000, members: 5, rate: 1000, payload: 100 },
  build(options) {
    const instances = option(options, "instances");
    const rooms = option(options, "rooms");
    const members = option(options, "members");
    if (!Number.isInteger(rooms) || rooms < 1) throw new Error("--rooms must be a positive integer");
    const conns: ConnSpec[] = [];
    const publishers: PublisherSpec[] = [];
    for (let r = 0; r < rooms; r++) {
      const room = `room-${r}`;
      // Member 0 of each room publishes; the room lives on instance r % instances.
      publishers.push({ conn: conns.length, kind: "room", targets: [room], fanout: members });
      for (let m = 0; m < members; m++) conns.push({ instance: r % instances, rooms: [room] });
    }
    return {
      summary:
        `${placement(options)}, ${rooms} rooms of ${members} members (each room on one instance), ` +
        `${rooms} publishers, ${option(options, "payload")}-byte payloads, ${option(options, "rate")} publishes/s`,
      instances,
      conns,
      publishers,
      rate: option(options, "rate"),
      payloadBytes: option(options, "payload"),
      needsTokens: false,
    };
  },
};
