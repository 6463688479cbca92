// `direct`: messages to users (crier `send`, Socket.IO's per-user room), the
// users spread over the instances and the senders too, so most sends cross
// instances through Redis.

import type { ConnSpec, PublisherSpec } from "../generator/spec.js";
import { option, placement, type Scenario } from "./scenario.js";

export const direct: Scenario = {
  name: "direct",
  about: "2 instances, 2000 users (one connection each), 20 senders sending to them in turn, 2000 sends/s",
  defaults: { instances: 2, users: 2000, senders: 20, rate: 2000, payload: 100 },
  build(options) {
    const instances = option(options, "instances");
    const users = option(options, "users");
    const senders = option(options, "senders");
    const conns: ConnSpec[] = [];
    for (let u = 0; u < users; u++) conns.push({ instance: u % instances, rooms: [], user: `u${u}` });
    const publishers: PublisherSpec[] = [];
    for (let s = 0; s < senders; s++) {
      // Sender s sends to users s, s + senders, ... in turn; senders are anonymous connections.
      const targets: string[] = [];
      for (let u = s; u < users; u += senders) targets.push(`u${u}`);
      if (targets.length === 0) continue;
      publishers.push({ conn: conns.length, kind: "user", targets, fanout: 1 });
      conns.push({ instance: s % instances, rooms: [] });
    }
    return {
      summary:
        `${placement(options)}, ${users} users (one connection each, spread over them), ` +
        `${senders} senders, ${option(options, "payload")}-byte payloads, ${option(options, "rate")} sends/s`,
      instances,
      conns,
      publishers,
      rate: option(options, "rate"),
      payloadBytes: option(options, "payload"),
      needsTokens: true,
    };
  },
};
