// limits.maxSubscribersPerRoom: how many of this instance's connections one
// room may have (docs/security.md). The hub asks before it adds a member, so
// every way into a room counts, server-side subscriptions included; a refusal
// is `rate_limited` (transient: the room may have room again, and the SDK
// retries a resubscribe), counted and logged through the throttle.

import { ProtocolError } from "crier-protocol";
import type { SubscriberAdmission } from "../hub/hub.js";
import type { Refusals } from "./refusals.js";

export class RoomSubscriberLimit implements SubscriberAdmission {
  private readonly max: number | undefined;
  private readonly refusals: Refusals;

  /** `max` undefined: no limit. */
  constructor(max: number | undefined, refusals: Refusals) {
    this.max = max;
    this.refusals = refusals;
  }

  admit(room: string, members: number): void {
    if (this.max === undefined || members < this.max) return;
    this.refusals.record("max_subscribers_per_room", { room }, "subscribe refused: room full on this instance");
    throw new ProtocolError(
      "rate_limited",
      `room '${room}' has ${this.max} subscribers on this instance, its limit (limits.maxSubscribersPerRoom): try again later`,
    );
  }
}
