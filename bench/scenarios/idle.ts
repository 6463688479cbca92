// `idle`: connections that do nothing but answer pings, each in one room:
// what a connection costs in resident memory on each instance.

import type { ConnSpec } from "../generator/spec.js";
import { option, placement, type Scenario, sourceAddress } from "./scenario.js";

export const idle: Scenario = {
  name: "idle",
  about:
    "K idle connections (--connections, default 10000) over 2 instances, each in one of 100 rooms: RSS per connection",
  defaults: { instances: 2, connections: 10_000, rooms: 100 },
  build(options) {
    const instances = option(options, "instances");
    const connections = option(options, "connections");
    const rooms = option(options, "rooms");
    const conns: ConnSpec[] = [];
    for (let i = 0; i < connections; i++) {
      const source = sourceAddress(i, connections);
      conns.push({
        instance: i % instances,
        rooms: rooms > 0 ? [`room-${i % rooms}`] : [],
        ...(source === undefined ? {} : { localAddress: source }),
      });
    }
    return {
      summary: `${placement(options)}, ${connections} idle connections${rooms > 0 ? ` each in one of ${rooms} rooms` : ""}`,
      instances,
      conns,
      publishers: [],
      rate: 0,
      payloadBytes: 100,
      needsTokens: false,
    };
  },
};
