// A subscriber's catch-up in a room with history: from the moment its
// subscription is live, live messages are held; the history read says where
// the room stands; with `since`, what the client missed is replayed at the
// pace its socket drains (a client far behind is neither closed as a slow
// consumer nor allowed to pull the whole history into memory at once); then
// the held live messages follow, each offset once, in order.

import { CloseCode, type StreamPosition } from "crier-protocol";
import { MessageFrame, type OutboundFrame } from "../hub/outbound-frame.js";
import { type Admission, OffsetGate } from "./offset-gate.js";
import type { Recovery } from "./recovery.js";

/** Live messages a connection may hold per room while catching up from history. */
const MAX_HELD = 10_000;

export interface CatchUpTarget {
  /** The `subscribed` reply: where the room stands and whether what was missed follows. */
  subscribed(position: StreamPosition, recovered: boolean): void;
  /** Sends a frame, first waiting while the connection's queue is past its bound; false once it is gone. */
  sendPaced(frame: OutboundFrame): Promise<boolean>;
  /** Sends a frame now (a held live message). */
  send(frame: OutboundFrame): void;
  /** This room's position on this instance, for the room's own order (RoomOrder.seed). */
  seed(position: StreamPosition): void;
  /** False once the subscription this catch-up serves has ended (unsubscribed, closed). */
  current(): boolean;
  /** Ends the connection: what it missed cannot be delivered in order. */
  close(code: number, reason: string): void;
}

export type CatchUpOutcome = "done" | "lost" | "ended";

export class CatchUp {
  readonly room: string;
  private readonly recovery: Recovery;
  private readonly gate = new OffsetGate<OutboundFrame>(0, true);

  constructor(recovery: Recovery, room: string) {
    this.recovery = recovery;
    this.room = room;
  }

  /**
   * A live message for this subscriber: "deliver" it now, or it was "held"
   * for the catch-up, or is a "duplicate" of one already sent; "overflow"
   * when a replay cannot keep up with the room.
   */
  admit(offset: number, frame: OutboundFrame): Admission | "overflow" {
    const verdict = this.gate.admit(offset, frame);
    if (verdict === "held" && this.gate.heldCount > MAX_HELD) return "overflow";
    return verdict;
  }

  /** Reads where the room stands, replies, replays what was missed after `since` and releases what was held. */
  async run(since: StreamPosition | undefined, target: CatchUpTarget): Promise<CatchUpOutcome> {
    const read = await this.recovery.read(this.room, since);
    if (!target.current() || read === undefined) return "ended";
    const position = read.position;
    target.seed(position);
    const recovered =
      since !== undefined && read.complete && since.epoch === position.epoch && since.offset <= position.offset;
    target.subscribed(position, recovered);
    let after = position.offset;
    if (recovered) {
      after = since.offset;
      const pages = this.recovery.pages(this.room, since, position.offset, read);
      for (;;) {
        const next = await pages.next();
        if (!target.current()) return "ended";
        if (next.done === true) {
          if (next.value === "lost") {
            target.close(
              CloseCode.MessagesLost,
              `missed messages in '${this.room}' left history during the replay: reconnect`,
            );
            return "lost";
          }
          break;
        }
        for (const message of next.value) {
          if (!(await target.sendPaced(new MessageFrame(this.room, message)))) return "ended";
          after = message.offset ?? after;
        }
      }
    }
    if (!target.current()) return "ended";
    for (const frame of this.gate.release(after, []).items) target.send(frame);
    return "done";
  }
}
