// The local index: room -> sessions and user -> sessions on this instance, and
// fan-out of what the broker delivers to them. The hub reference-counts members
// so the broker is subscribed to a channel exactly while some local session
// needs it. Each publication is encoded once here, not once per recipient.

import { encodeDirectFrame, encodeMessageFrame } from "crier-protocol";
import type { Logger } from "pino";
import type { Broker, ChannelNames } from "../broker/broker.js";
import type { Envelope } from "../broker/envelope.js";

/** What the hub needs of a session. */
export interface HubMember {
  readonly id: string;
  readonly user: string;
  /** Queues an encoded text frame for this member. */
  deliver(frame: Buffer): void;
  /** The server ended this member's subscription (`/api/unsubscribe`). */
  roomRemoved(room: string): void;
  /** The server asked this member's connection to close (`/api/disconnect`). */
  disconnect(code: number, reason: string): void;
}

interface Channel {
  readonly members: Set<HubMember>;
  /** Settles when the broker confirmed the subscription that this channel's first member started. */
  ready: Promise<void>;
}

export class Hub {
  private readonly rooms = new Map<string, Channel>();
  private readonly users = new Map<string, Channel>();
  private readonly clients = new Map<string, HubMember>();
  private readonly broker: Broker;
  private readonly names: ChannelNames;
  private readonly logger: Logger;

  constructor(broker: Broker, names: ChannelNames, logger: Logger) {
    this.broker = broker;
    this.names = names;
    this.logger = logger;
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
        const frame = Buffer.from(encodeMessageFrame(room, envelope.data, envelope.offset, envelope.from));
        for (const member of entry.members) member.deliver(frame);
        return;
      }
      case "direct": {
        const entry = envelope.user === undefined ? undefined : this.users.get(envelope.user);
        if (entry === undefined) return;
        const frame = Buffer.from(encodeDirectFrame(envelope.data, envelope.from));
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

  /** Local members of `room` (for tests and presence on this instance). */
  roomSize(room: string): number {
    return this.rooms.get(room)?.members.size ?? 0;
  }

  stats(): { rooms: number; users: number; clients: number } {
    return { rooms: this.rooms.size, users: this.users.size, clients: this.clients.size };
  }
}
