// This instance's side of presence: its connections' memberships of rooms
// whose namespace enables presence or join/leave events, written to the
// presence store and announced on the room's channel as `join` and `leave`
// envelopes. Each member's steps run in order (its leave never overtakes its
// join, in the store or on the channel), and a clean shutdown waits for them.

import type { Member } from "crier-protocol";
import type { Logger } from "pino";
import type { Envelope } from "../broker/envelope.js";
import type { PresenceStore } from "./presence.js";

/** What a room's namespace enables. */
export interface PresenceSettings {
  presence: boolean;
  joinLeave: boolean;
}

export interface PresenceTrackerOptions {
  /** This instance's id: the `node` of its entries and envelopes. */
  nodeId: string;
  /**
   * Present when some namespace enables presence or join/leave events. Members
   * of rooms with either are stored, so that when this instance crashes the
   * survivors know whose leaves to announce (PresenceStore.sweep).
   */
  store: PresenceStore | undefined;
  settings(room: string): PresenceSettings;
  /** Publishes an envelope on `room`'s channel; rejects with ProtocolError("unavailable") when it cannot. */
  announce(room: string, envelope: Envelope): Promise<void>;
  logger: Logger;
}

interface Tracked {
  readonly member: Member;
  readonly settings: PresenceSettings;
  /** Whether a `join` may have gone out, so the `leave` must follow. */
  announced: boolean;
  /** Settles (never rejects) when the member's latest step is done. */
  last: Promise<void>;
}

export class PresenceTracker {
  private readonly options: PresenceTrackerOptions;
  /** Keyed by room and client id. */
  private readonly tracked = new Map<string, Tracked>();
  private readonly pending = new Set<Promise<void>>();

  constructor(options: PresenceTrackerOptions) {
    this.options = options;
  }

  /**
   * `member` has subscribed to `room`: adds it to the store (so a `presence`
   * right after lists it), then announces the join. Rejects when either
   * fails; the caller then undoes the subscription and calls left().
   */
  async joined(room: string, member: Member): Promise<void> {
    const settings = this.options.settings(room);
    if (!settings.presence && !settings.joinLeave) return;
    const key = keyOf(room, member.client);
    if (this.tracked.has(key)) return;
    const tracked: Tracked = { member, settings, announced: false, last: Promise.resolve() };
    this.tracked.set(key, tracked);
    const step = this.join(room, tracked);
    tracked.last = this.settle(step);
    await step;
  }

  /** `client` is no longer in `room` (unsubscribed, unsubscribed by the server, or disconnected). */
  left(room: string, client: string): void {
    const key = keyOf(room, client);
    const tracked = this.tracked.get(key);
    if (tracked === undefined) return;
    this.tracked.delete(key);
    tracked.last = this.settle(tracked.last.then(() => this.leave(room, tracked)));
  }

  /** Resolves once every step started so far is done: a clean shutdown removes its entries before disconnecting. */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  private async join(room: string, tracked: Tracked): Promise<void> {
    const { store, nodeId } = this.options;
    if (store !== undefined) {
      await store.add(room, { ...tracked.member, node: nodeId });
    }
    if (tracked.settings.joinLeave) {
      // Set before publishing: a publish that times out may still have been delivered,
      // and a leave for a join nobody saw is harmless where a missing leave is not.
      tracked.announced = true;
      await this.options.announce(room, this.envelope("join", room, tracked.member));
    }
  }

  /** Failures are logged, not thrown: the member is gone either way, and a crashed entry is pruned with its instance. */
  private async leave(room: string, tracked: Tracked): Promise<void> {
    const { store, logger } = this.options;
    const client = tracked.member.client;
    if (store !== undefined) {
      await store.remove(room, client).catch((err: unknown) => {
        logger.warn({ err: messageOf(err), room, client }, "could not remove a presence entry");
      });
    }
    if (tracked.announced) {
      await this.options.announce(room, this.envelope("leave", room, tracked.member)).catch((err: unknown) => {
        logger.warn({ err: messageOf(err), room, client }, "could not announce a leave");
      });
    }
  }

  private envelope(kind: "join" | "leave", room: string, member: Member): Envelope {
    return { kind, room, client: member.client, node: this.options.nodeId, data: JSON.stringify(member) };
  }

  /** The step as a promise that never rejects, counted until it settles. */
  private settle(step: Promise<void>): Promise<void> {
    const settled = step.catch(() => {});
    this.pending.add(settled);
    settled.then(() => this.pending.delete(settled));
    return settled;
  }
}

/** Room names never contain a space (docs/protocol.md), so this key is unambiguous. */
function keyOf(room: string, client: string): string {
  return `${room} ${client}`;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
