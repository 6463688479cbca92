// The local index: room -> sessions and user -> sessions on this instance, and
// fan-out of what the broker delivers to them. The hub reference-counts members
// so the broker is subscribed to a channel exactly while some local session
// needs it. Each publication becomes one shared frame, encoded at most once
// per subprotocol, not once per recipient.

import { CloseCode, type StreamPosition } from "crier-protocol";
import type { Logger } from "pino";
import type { Broker, ChannelNames } from "../broker/broker.js";
import type { Envelope } from "../broker/envelope.js";
import type { Recovery } from "../recovery/recovery.js";
import { RoomOrder } from "../recovery/room-order.js";
import { DirectFrame, MemberFrame, MessageFrame, type OutboundFrame } from "./outbound-frame.js";

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

/** Whether a room may take another local member (limits/room-subscribers.ts); throws ProtocolError if not. */
export interface SubscriberAdmission {
  admit(room: string, members: number): void;
}

/** A room's size and traffic on this instance (for the console's busiest rooms). */
export interface RoomLoad {
  room: string;
  /** Connections subscribed. */
  members: number;
  /** Publications fanned out per second over the last full second. */
  messagesPerSecond: number;
}

/** Busiest first: by members, then by messages per second, then by name. */
export function busiestFirst(a: RoomLoad, b: RoomLoad): number {
  return b.members - a.members || b.messagesPerSecond - a.messagesPerSecond || (a.room < b.room ? -1 : 1);
}

interface Channel {
  readonly members: Set<HubMember>;
  /** Settles when the broker confirmed the subscription that this channel's first member started. */
  ready: Promise<void>;
  /** For rooms with history: keeps offsets contiguous on this instance; made on the first offset or seed. */
  order?: RoomOrder;
  /** Publications fanned out in second `tick` and in the second before it (the console's messages/s). */
  tick?: number;
  current?: number;
  previous?: number;
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
  private readonly recovery: Recovery | undefined;
  private readonly admission: SubscriberAdmission | undefined;
  /** Seconds counted by advanceTick(): a coarse clock, so fan-out reads no time of its own. */
  private tick = 0;

  /**
   * Without `recovery`, publications with offsets are delivered as they come, gaps and all;
   * without `admission`, rooms take any number of members.
   */
  constructor(
    broker: Broker,
    names: ChannelNames,
    logger: Logger,
    recovery?: Recovery,
    admission?: SubscriberAdmission,
  ) {
    this.broker = broker;
    this.names = names;
    this.logger = logger;
    this.recovery = recovery;
    this.admission = admission;
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

  /**
   * Adds `member` to `room`; resolves once the broker delivers the room's publications here.
   * Throws (synchronously) what the admission throws when the room is full here.
   */
  subscribe(member: HubMember, room: string): Promise<void> {
    const members = this.rooms.get(room)?.members;
    if (this.admission !== undefined && !members?.has(member)) this.admission.admit(room, members?.size ?? 0);
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
        const order = envelope.offset === undefined ? undefined : this.orderOf(room, entry);
        if (order === undefined || envelope.offset === undefined) {
          this.fanOut(room, entry, envelope);
          return;
        }
        order.admit(envelope, envelope.offset);
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
        const code = envelope.code ?? CloseCode.ShuttingDown;
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
    if (entry.tick !== this.tick) {
      entry.previous = entry.tick === this.tick - 1 ? entry.current : 0;
      entry.current = 0;
      entry.tick = this.tick;
    }
    entry.current = (entry.current ?? 0) + 1;
    for (const member of entry.members) member.deliver(frame, room, envelope.offset);
  }

  /** The room's order on this instance, made on first use. */
  private orderOf(room: string, entry: Channel): RoomOrder | undefined {
    if (entry.order !== undefined || this.recovery === undefined) return entry.order;
    entry.order = new RoomOrder(room, this.recovery, {
      deliver: (envelope) => this.fanOut(room, entry, envelope),
      lost: (why) => this.lost(room, entry, why),
      current: () => this.rooms.get(room) === entry,
      repaired: (count) => {
        this.counters.repairs += count;
      },
      readFailed: (error) => this.logger.warn({ err: error, room }, "could not read history to repair a gap"),
    });
    return entry.order;
  }

  /** The members of `room` here missed messages that cannot be replayed: they reconnect and recover. */
  private lost(room: string, entry: Channel, why: string): void {
    this.logger.warn(
      { room, members: entry.members.size, why },
      "messages lost on this instance: disconnecting members",
    );
    this.counters.lost++;
    for (const member of [...entry.members]) {
      member.disconnect(CloseCode.MessagesLost, `missed messages in '${room}': reconnect and recover`);
    }
  }

  /** A member of `room` subscribed at `position` (its history read): see RoomOrder.seed. */
  seed(room: string, position: StreamPosition): void {
    const entry = this.rooms.get(room);
    if (entry !== undefined) this.orderOf(room, entry)?.seed(position);
  }

  /**
   * After the backplane reconnects (or, given `channels`, after those
   * channels' subscriptions moved): every room with history among them
   * checks, from its last delivered offset, whether it missed anything meanwhile.
   */
  resync(channels?: ReadonlySet<string>): void {
    for (const [room, entry] of this.rooms) {
      if (channels === undefined || channels.has(this.names.room(room))) entry.order?.resync();
    }
  }

  /** Local members of `room` (for tests and presence on this instance). */
  roomSize(room: string): number {
    return this.rooms.get(room)?.members.size ?? 0;
  }

  /** Called once a second: the boundary of the per-room publication counts. */
  advanceTick(): void {
    this.tick++;
  }

  /** Publications fanned out in `room` during the last full second. */
  private rate(entry: Channel): number {
    if (entry.tick === this.tick) return entry.previous ?? 0;
    return entry.tick === this.tick - 1 ? (entry.current ?? 0) : 0;
  }

  /**
   * Local rooms whose name contains `search`, busiest first (by members, then
   * by messages per second), at most `limit`. Walks every room: for the
   * console, on request only.
   */
  roomLoads(search: string, limit: number): RoomLoad[] {
    const loads: RoomLoad[] = [];
    for (const [room, entry] of this.rooms) {
      if (search !== "" && !room.includes(search)) continue;
      loads.push({ room, members: entry.members.size, messagesPerSecond: this.rate(entry) });
    }
    loads.sort(busiestFirst);
    return loads.slice(0, limit);
  }

  /** Local members of `room`, at most `limit`. */
  subscribers(room: string, limit: number): { client: string; user: string }[] {
    const out: { client: string; user: string }[] = [];
    for (const member of this.rooms.get(room)?.members ?? []) {
      if (out.length >= limit) break;
      out.push({ client: member.id, user: member.user });
    }
    return out;
  }

  stats(): { rooms: number; users: number; clients: number } {
    return { rooms: this.rooms.size, users: this.users.size, clients: this.clients.size };
  }
}
