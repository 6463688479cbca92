// One room's offsets on this instance: each publication delivered once, in
// offset order. A gap (the backplane dropped messages, e.g. while this
// instance's subscriber connection was down) is repaired from history before
// anything after it is delivered; what cannot be repaired (history no longer
// has it, or the room's history was reset) ends the room here: its members
// reconnect and recover.

import type { StreamPosition } from "crier-protocol";
import type { Envelope } from "../broker/envelope.js";
import { OffsetGate } from "./offset-gate.js";
import type { Recovery } from "./recovery.js";

export interface RoomOrderHost {
  /** Fans a publication out to the room's local members. */
  deliver(envelope: Envelope): void;
  /** What the members missed cannot be delivered: close them (4504) so they reconnect and recover. */
  lost(why: string): void;
  /** False once the room has no local members (the hub dropped it). */
  current(): boolean;
  /** Messages replayed from history to repair a gap. */
  repaired(count: number): void;
  /** A gap repair could not read history. */
  readFailed(error: unknown): void;
}

export class RoomOrder {
  private readonly room: string;
  private readonly recovery: Recovery;
  private readonly host: RoomOrderHost;
  private gate: OffsetGate<Envelope> | undefined;
  private epoch: string | undefined;

  constructor(room: string, recovery: Recovery, host: RoomOrderHost) {
    this.room = room;
    this.recovery = recovery;
    this.host = host;
  }

  /** A publication with an offset, from the backplane. */
  admit(envelope: Envelope, offset: number): void {
    if (this.gate === undefined || envelope.epoch !== this.epoch) {
      if (this.gate !== undefined) {
        // A new epoch: the room's history was lost (e.g. Redis restarted empty).
        // What this instance's members missed cannot be known: they reconnect,
        // resubscribe and are told recovered: false.
        this.lose("the room's history was reset");
        if (!this.host.current()) return;
      }
      this.epoch = envelope.epoch;
      this.gate = new OffsetGate<Envelope>(offset - 1, false);
    }
    const gate = this.gate;
    if (!gate.catchingUp && offset > gate.position + 1 && this.epoch !== undefined) {
      gate.hold();
      gate.admit(offset, envelope);
      this.repair(gate, { offset: gate.position, epoch: this.epoch }, offset - 1);
      return;
    }
    const verdict = gate.admit(offset, envelope);
    if (verdict === "deliver" || verdict === "gap") this.host.deliver(envelope);
  }

  /**
   * A member subscribed at `position` (what its history read returned). Until
   * a live message arrives, that is where this instance stands in the room:
   * without it, resync() and admit() could not notice an epoch change or the
   * messages the backplane dropped before the first live one. Only the first
   * seed counts; history reads complete in order, so the first is the lowest.
   */
  seed(position: StreamPosition): void {
    if (this.gate !== undefined) return;
    this.epoch = position.epoch;
    this.gate = new OffsetGate<Envelope>(position.offset, false);
  }

  /** After the backplane reconnects: checks, from the last delivered offset, whether anything was missed. */
  resync(): void {
    const gate = this.gate;
    if (gate === undefined || gate.catchingUp || this.epoch === undefined) return;
    gate.hold();
    // Up to where history stands now: the first read says.
    this.repair(gate, { offset: gate.position, epoch: this.epoch }, undefined);
  }

  /** Reads what was missed after `since` and releases it, then what arrived meanwhile. */
  private repair(gate: OffsetGate<Envelope>, since: StreamPosition, upTo: number | undefined): void {
    const current = (): boolean => this.host.current() && this.gate === gate;
    this.readMissed(since, upTo).then(
      (missed) => {
        if (!current()) return;
        if (missed === undefined) {
          this.lose("missed messages are no longer in history");
          return;
        }
        const released = gate.release(since.offset, missed);
        if (!released.contiguous) {
          this.lose("missed messages are no longer in history");
          return;
        }
        this.host.repaired(released.items.length);
        for (const message of released.items) this.host.deliver(message);
      },
      (error: unknown) => {
        this.host.readFailed(error);
        if (current()) this.lose("history unreachable");
      },
    );
  }

  /** Every missed message after `since`; undefined when history no longer has them. */
  private async readMissed(
    since: StreamPosition,
    upTo: number | undefined,
  ): Promise<{ offset: number; item: Envelope }[] | undefined> {
    const first = await this.recovery.read(this.room, since);
    if (first === undefined) return undefined;
    const missed: { offset: number; item: Envelope }[] = [];
    const pages = this.recovery.pages(this.room, since, upTo ?? first.position.offset, first);
    for (;;) {
      const next = await pages.next();
      if (next.done === true) return next.value === "done" ? missed : undefined;
      for (const message of next.value) missed.push({ offset: message.offset ?? 0, item: message });
    }
  }

  private lose(why: string): void {
    this.gate = undefined;
    this.epoch = undefined;
    this.host.lost(why);
  }
}
