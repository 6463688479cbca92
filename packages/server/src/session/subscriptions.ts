// One session's rooms: subscribing (authorize, join the hub, announce
// presence, catch up from history in rooms that keep it), leaving, and the
// per-room admission of live messages while a catch-up holds them.

import { CloseCode, type Member, ProtocolError, type ReplyFrame, type StreamPosition } from "crier-protocol";
import type { HubMember } from "../hub/hub.js";
import type { OutboundFrame } from "../hub/outbound-frame.js";
import { CatchUp } from "../recovery/catch-up.js";
import type { SessionHost, SessionView } from "./host.js";

/** What the rooms need of the session they belong to. */
export interface Subscriber extends HubMember, SessionView {
  /** False once the session has closed (a method: callers read it across awaits). */
  isOpen(): boolean;
  member(): Member;
  /** Sends a shared frame, first waiting while the connection's queue is past its bound; false once gone. */
  sendPaced(frame: OutboundFrame): Promise<boolean>;
  /** Sends a shared frame now; a full outbound queue closes the session as a slow consumer. */
  send(frame: OutboundFrame): void;
}

export class SessionRooms {
  readonly names = new Set<string>();
  private readonly host: SessionHost;
  private readonly session: Subscriber;
  /** Per room with history: keeps this connection's offsets gap- and duplicate-free across a catch-up. */
  private catchUps: Map<string, CatchUp> | undefined;

  constructor(host: SessionHost, session: Subscriber) {
    this.host = host;
    this.session = session;
  }

  has(room: string): boolean {
    return this.names.has(room);
  }

  /**
   * Subscribes to `room`; `answer` sends the `subscribed` frame (a reply, or a
   * push for a server-side subscription, which is granted already and so not
   * authorized again). Throws ProtocolError when refused.
   */
  async subscribe(
    room: string,
    since: StreamPosition | undefined,
    serverSide: boolean,
    answer: (frame: ReplyFrame) => void,
  ): Promise<void> {
    const { maxSubscriptions } = this.host.settings;
    const session = this.session;
    if (this.names.has(room)) throw new ProtocolError("already_subscribed", `already subscribed to '${room}'`);
    if (this.names.size >= maxSubscriptions) {
      throw new ProtocolError(
        "forbidden",
        `subscription limit reached: ${maxSubscriptions} rooms per connection (limits.maxSubscriptions)`,
      );
    }
    if (!serverSide) await this.host.auth.authorize(session, room, "subscribe");
    // Closed meanwhile (e.g. by a bad frame in the same read): joining now would leave it in the hub for good.
    if (!session.isOpen()) return;
    // In a room with history, live messages are held from the moment the
    // subscription is live until the history read says where this client is.
    const catchUp = this.host.recovery.keepsHistory(room) ? new CatchUp(this.host.recovery, room) : undefined;
    if (catchUp !== undefined) {
      this.catchUps ??= new Map();
      this.catchUps.set(room, catchUp);
    }
    this.names.add(room);
    const current = (): boolean => session.isOpen() && this.names.has(room) && this.catchUps?.get(room) === catchUp;
    try {
      await this.host.hub.subscribe(session, room);
      // Left (closed, or unsubscribed by the server) while subscribing: not a member any more.
      if (current()) await this.host.presence.joined(room, session.member());
      if (catchUp === undefined) {
        answer({ op: "subscribed", room, recovered: false });
        return;
      }
      await catchUp.run(since, {
        subscribed: (position, recovered) =>
          answer({ op: "subscribed", room, offset: position.offset, epoch: position.epoch, recovered }),
        sendPaced: (frame) => session.sendPaced(frame),
        send: (frame) => session.send(frame),
        seed: (position) => this.host.hub.seed(room, position),
        current,
        close: (code, reason) => session.close(code, reason),
      });
    } catch (error) {
      if (this.names.has(room) && this.catchUps?.get(room) === catchUp) this.leave(room);
      throw error;
    }
  }

  /** Leaves `room` here: the hub's index, the catch-up, and the room's presence. */
  leave(room: string): void {
    this.names.delete(room);
    this.catchUps?.delete(room);
    this.host.hub.unsubscribe(this.session, room);
    this.host.presence.left(room, this.session.id);
  }

  /**
   * Whether a live publication at `offset` in `room` goes out now: not while
   * the room's catch-up holds it, never twice. A replay that cannot keep up
   * with the room closes the session.
   */
  admit(room: string | undefined, offset: number | undefined, frame: OutboundFrame): boolean {
    const catchUp = offset === undefined || room === undefined ? undefined : this.catchUps?.get(room);
    if (catchUp === undefined || offset === undefined) return true;
    const verdict = catchUp.admit(offset, frame);
    if (verdict === "overflow") {
      this.session.close(CloseCode.SlowConsumer, "slow consumer: too far behind during recovery");
      return false;
    }
    return verdict !== "duplicate" && verdict !== "held";
  }

  /** The session closed: leaves every room (the hub's index and presence) when it had joined the hub. */
  closed(wasConnected: boolean): void {
    this.catchUps = undefined;
    if (wasConnected) {
      this.host.hub.removeMember(this.session, this.names);
      for (const room of this.names) this.host.presence.left(room, this.session.id);
    }
    this.names.clear();
  }
}
