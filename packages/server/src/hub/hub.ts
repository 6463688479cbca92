// The local index: room -> sessions and user -> sessions on this instance, and
// fan-out of what the broker delivers to them. The hub reference-counts members
// so the broker is subscribed to a channel exactly while some local session
// needs it. Each publication becomes one shared frame, encoded at most once
// per subprotocol, not once per recipient.

import { CloseCode, type StreamPosition } from "crier-protocol";
import type { Logger } from "pino";
import type { Broker, ChannelNames } from "../broker/broker.js";
import type { Envelope } from "../broker/envelope.js";
import type { HistoryRead } from "../history/history.js";
import { OffsetGate } from "../history/merge.js";
import { DirectFrame, MemberFrame, MessageFrame, type OutboundFrame } from "./outbound-frame.js";

/** Reads a room's history after `since`, for repairing a gap; undefined when the room keeps none. */
export type GapReader = (room: string, since: StreamPosition) => Promise<HistoryRead | undefined>;

/** What the hub needs of a session. */
export interface HubMember {
  readonly id: string;
  readonly user: string;
  /** Queues a shared frame for this member; `room` and `offset` for publications in rooms with history. */
  deliver(frame: OutboundFrame, room?: string, offset?: number): void;
  /** The server ended this member's subscription (`/api/unsubscribe`). */
  roomRemoved(room: string): void;
  /** The server asked this member's connection to close (`/api/disconnect`). */
  disconnect(code: number, reason: string): void;
}

interface Channel {
  readonly members: Set<HubMember>;
  /** Settles when the broker confirmed the subscription that this channel's first member started. */
  ready: Promise<void>;
  /** For rooms with history: the epoch and the gate that keeps offsets contiguous on this instance. */
  epoch?: string;
  gate?: OffsetGate<Envelope>;
}

export class Hub {
  private readonly rooms = new Map<string, Channel>();
  private readonly users = new Map<string, Channel>();
  private readonly clients = new Map<string, HubMember>();
  /** Running totals (plain numbers: the hot path only adds). */
  readonly counters = { publications: 0, deliveries: 0, directs: 0, repairs: 0, lost: 0 };
  private readonly broker: Broker;
  private readonly names: ChannelNames;
  private readonly logger: Logger;
  private readonly readGap: GapReader | undefined;

  constructor(broker: Broker, names: ChannelNames, logger: Logger, readGap?: GapReader) {
    this.broker = broker;
    this.names = names;
    this.logger = logger;
    this.readGap = readGap;
  }

  /** Registers a connected session under its client id and user. */
  async addMember(member: HubMember): Promise<void> {
    this.clients.set(member.id, member);
    if (member.user === "") return;
    try {
      await this.join(this.users, this.names.user(member.user), member.user, member);
    } catch (error) {
      this.clients.delete(member.id);
      throw error;
    }
  }

  /** Removes a session from every index it is in. */
  removeMember(member: HubMember, rooms: Iterable<string>): void {
    for (const room of rooms) this.unsubscribe(member, room);
    if (member.user !== "") this.leave(this.users, this.names.user(member.user), member.user, member);
    if (this.clients.get(member.id) === member) this.clients.delete(member.id);
  }

  /** Adds `member` to `room`; resolves once the broker delivers the room's publications here. */
  subscribe(member: HubMember, room: string): Promise<void> {
    return this.join(this.rooms, this.names.room(room), room, member);
  }

  unsubscribe(member: HubMember, room: string): void {
    this.leave(this.rooms, this.names.room(room), room, member);
  }

  private join(index: Map<string, Channel>, channel: string, key: string, member: HubMember): Promise<void> {
    const existing = index.get(key);
    if (existing !== undefined) {
      existing.members.add(member);
      return existing.ready;
    }
    const entry: Channel = { members: new Set([member]), ready: Promise.resolve() };
    index.set(key, entry);
    entry.ready = this.broker.subscribe(channel).catch((error: unknown) => {
      // Nobody is delivered to on a channel the broker refused: undo the join
      // for every member that waited on it, and tell them why.
      if (index.get(key) === entry) {
        index.delete(key);
        // A broker may keep a refused wish to apply after reconnecting: withdraw it.
        this.broker.unsubscribe(channel).catch((cause: unknown) => {
          this.logger.warn({ err: cause, channel }, "broker unsubscribe failed");
        });
      }
      throw error;
    });
    return entry.ready;
  }

  private leave(index: Map<string, Channel>, channel: string, key: string, member: HubMember): void {
    const entry = index.get(key);
    if (entry === undefined || !entry.members.delete(member)) return;
    if (entry.members.size > 0) return;
    index.delete(key);
    this.broker.unsubscribe(channel).catch((error: unknown) => {
      this.logger.warn({ err: error, channel }, "broker unsubscribe failed");
    });
  }

  /** Fan-out of one envelope from the broker to the local members it concerns. */
  deliver(envelope: Envelope): void {
    switch (envelope.kind) {
      case "message": {
        const room = envelope.room;
        const entry = room === undefined ? undefined : this.rooms.get(room);
        if (room === undefined || entry === undefined) return;
        if (envelope.offset === undefined) {
          this.fanOut(room, entry, envelope);
          return;
        }
        this.admit(room, entry, envelope, envelope.offset);
        return;
      }
      case "join":
      case "leave": {
        const room = envelope.room;
        const entry = room === undefined ? undefined : this.rooms.get(room);
        if (room === undefined || entry === undefined) return;
        const frame = new MemberFrame(envelope.kind, room, envelope.data);
        // A member is not told of its own join (it has its `subscribed` reply).
        for (const member of entry.members) if (member.id !== envelope.client) member.deliver(frame);
        return;
      }
      case "direct": {
        const entry = envelope.user === undefined ? undefined : this.users.get(envelope.user);
        if (entry === undefined) return;
        const frame = new DirectFrame(envelope);
        this.counters.directs += entry.members.size;
        for (const member of entry.members) member.deliver(frame);
        return;
      }
      case "unsubscribe": {
        const entry = envelope.user === undefined ? undefined : this.users.get(envelope.user);
        const room = envelope.room;
        if (entry === undefined || room === undefined) return;
        for (const member of [...entry.members]) member.roomRemoved(room);
        return;
      }
      case "disconnect": {
        const code = envelope.code ?? 4500;
        const reason = envelope.reason ?? "disconnected by the server";
        if (envelope.client !== undefined) {
          this.clients.get(envelope.client)?.disconnect(code, reason);
          return;
        }
        const entry = envelope.user === undefined ? undefined : this.users.get(envelope.user);
        if (entry === undefined) return;
        for (const member of [...entry.members]) member.disconnect(code, reason);
        return;
      }
    }
  }

  private fanOut(room: string, entry: Channel, envelope: Envelope): void {
    const frame = new MessageFrame(room, envelope);
    this.counters.publications++;
    this.counters.deliveries += entry.members.size;
    for (const member of entry.members) member.deliver(frame, room, envelope.offset);
  }

  /**
   * A publication with an offset: delivered once, in offset order. A gap (the
   * backplane dropped messages, e.g. while this instance's subscriber connection
   * was down) is repaired from history before anything after it is delivered.
   */
  private admit(room: string, entry: Channel, envelope: Envelope, offset: number): void {
    if (entry.gate === undefined || envelope.epoch !== entry.epoch) {
      if (entry.gate !== undefined) {
        // A new epoch: the room's history was lost (e.g. Redis restarted empty).
        // What this instance's members missed cannot be known: they reconnect,
        // resubscribe and are told recovered: false.
        this.lost(room, entry, "the room's history was reset");
        if (this.rooms.get(room) !== entry) return;
      }
      entry.epoch = envelope.epoch;
      entry.gate = new OffsetGate<Envelope>(offset - 1, false);
    }
    const gate = entry.gate;
    if (!gate.catchingUp && offset > gate.position + 1 && this.readGap !== undefined && entry.epoch !== undefined) {
      gate.hold();
      gate.admit(offset, envelope);
      this.repair(room, entry, gate, { offset: gate.position, epoch: entry.epoch });
      return;
    }
    const verdict = gate.admit(offset, envelope);
    if (verdict === "deliver" || verdict === "gap") this.fanOut(room, entry, envelope);
  }

  /** Reads what was missed after `since` and releases it, then what arrived meanwhile. */
  private repair(room: string, entry: Channel, gate: OffsetGate<Envelope>, since: StreamPosition): void {
    const reader = this.readGap;
    if (reader === undefined) return;
    const current = (): boolean => this.rooms.get(room) === entry && entry.gate === gate;
    this.readMissed(reader, room, since).then(
      (missed) => {
        if (!current()) return;
        if (missed === undefined) {
          this.lost(room, entry, "missed messages are no longer in history");
          return;
        }
        const released = gate.release(since.offset, missed);
        if (!released.contiguous) {
          this.lost(room, entry, "missed messages are no longer in history");
          return;
        }
        this.counters.repairs += released.items.length;
        for (const message of released.items) this.fanOut(room, entry, message);
      },
      (error: unknown) => {
        this.logger.warn({ err: error, room }, "could not read history to repair a gap");
        if (current()) this.lost(room, entry, "history unreachable");
      },
    );
  }

  /** Every message after `since` up to the room's position, page by page; undefined when history no longer has them. */
  private async readMissed(
    reader: GapReader,
    room: string,
    since: StreamPosition,
  ): Promise<{ offset: number; item: Envelope }[] | undefined> {
    const missed: { offset: number; item: Envelope }[] = [];
    let after = since.offset;
    for (;;) {
      const read = await reader(room, { offset: after, epoch: since.epoch });
      if (read === undefined || !read.complete || read.position.epoch !== since.epoch) return undefined;
      // History behind what was delivered here: Redis came back from an older
      // snapshot, or a replica that lagged was promoted. Its next offsets would
      // repeat ones members already have, and be dropped as duplicates: lost.
      if (read.position.offset < since.offset) return undefined;
      for (const message of read.messages) missed.push({ offset: message.offset ?? 0, item: message });
      const last = read.messages.at(-1)?.offset;
      if (last === undefined || last >= read.position.offset) return missed;
      after = last;
    }
  }

  /** The members of `room` here missed messages that cannot be replayed: they reconnect and recover. */
  private lost(room: string, entry: Channel, why: string): void {
    this.logger.warn(
      { room, members: entry.members.size, why },
      "messages lost on this instance: disconnecting members",
    );
    entry.gate = undefined;
    entry.epoch = undefined;
    for (const member of [...entry.members]) {
      member.disconnect(CloseCode.MessagesLost, `missed messages in '${room}': reconnect and recover`);
    }
  }

  /**
   * A member of `room` subscribed at `position` (what its history read returned).
   * Until a live message arrives, that is where this instance stands in the room:
   * without a gate, resync() and admit() could not notice an epoch change or the
   * messages the backplane dropped before the first live one. Only a room without
   * a gate is seeded; history reads complete in order, so the first is the lowest.
   */
  seed(room: string, position: StreamPosition): void {
    const entry = this.rooms.get(room);
    if (entry === undefined || entry.gate !== undefined) return;
    entry.epoch = position.epoch;
    entry.gate = new OffsetGate<Envelope>(position.offset, false);
  }

  /**
   * After the backplane reconnects: every room with history checks, from its
   * last delivered offset, whether it missed anything while disconnected.
   */
  resync(): void {
    for (const [room, entry] of this.rooms) {
      const gate = entry.gate;
      if (gate === undefined || gate.catchingUp || entry.epoch === undefined) continue;
      gate.hold();
      this.repair(room, entry, gate, { offset: gate.position, epoch: entry.epoch });
    }
  }

  /** Local members of `room` (for tests and presence on this instance). */
  roomSize(room: string): number {
    return this.rooms.get(room)?.members.size ?? 0;
  }

  /**
   * The `count` rooms with the most local members, most first (ties by name):
   * one pass keeping the best so far, so a heartbeat can carry it cheaply.
   */
  busiest(count: number): RoomSize[] {
    const best: RoomSize[] = [];
    for (const [room, entry] of this.rooms) {
      const members = entry.members.size;
      const last = best[best.length - 1];
      if (best.length === count && last !== undefined && !isBigger(members, room, last)) continue;
      let at = best.length;
      while (at > 0 && isBigger(members, room, best[at - 1] as RoomSize)) at--;
      best.splice(at, 0, { room, members });
      if (best.length > count) best.pop();
    }
    return best;
  }

  stats(): { rooms: number; users: number; clients: number } {
    return { rooms: this.rooms.size, users: this.users.size, clients: this.clients.size };
  }
}

/** A room and how many members it has (on one instance, or summed over the cluster). */
export interface RoomSize {
  room: string;
  members: number;
}

function isBigger(members: number, room: string, than: RoomSize): boolean {
  return members > than.members || (members === than.members && room < than.room);
}

/**
 * The cluster's `count` busiest rooms from each instance's own busiest: the
 * members of a room summed over the instances that report it. A room that is
 * not among the busiest of any one instance is left out, however big in sum.
 */
export function busiestRooms(nodes: ReadonlyArray<{ busiest?: RoomSize[] }>, count: number): RoomSize[] {
  const sums = new Map<string, number>();
  for (const node of nodes) {
    for (const { room, members } of node.busiest ?? []) sums.set(room, (sums.get(room) ?? 0) + members);
  }
  return [...sums]
    .map(([room, members]) => ({ room, members }))
    .sort((a, b) => (isBigger(a.members, a.room, b) ? -1 : isBigger(b.members, b.room, a) ? 1 : 0))
    .slice(0, count);
}
