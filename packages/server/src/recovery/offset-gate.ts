// Gap-free, duplicate-free delivery of one room's offsets. While a history
// read is in flight the gate holds live messages; when the read returns it
// releases the missed messages from history and then the held ones, each
// offset once, in order; afterwards it passes live messages through, dropping
// any at or below the last one released (a history read and the live channel
// come over different connections, so a message can arrive live after it was
// already read from history). Used per subscriber by CatchUp (subscribe with
// `since`) and per room by RoomOrder (repairing a gap on this instance).

export interface Offsetted<T> {
  offset: number;
  item: T;
}

export interface Release<T> {
  /** What to deliver, in order. */
  items: T[];
  /** The offset of the last message released (the new position). */
  last: number;
  /** False when the released offsets are not contiguous from the start: something was lost. */
  contiguous: boolean;
}

export type Admission = "deliver" | "held" | "duplicate" | "gap";

export class OffsetGate<T> {
  private held: Offsetted<T>[] | undefined;
  private floor: number;

  /** `position`: the last offset already delivered; `catchingUp`: start by holding live messages. */
  constructor(position: number, catchingUp: boolean) {
    this.floor = position;
    this.held = catchingUp ? [] : undefined;
  }

  /** The last offset delivered. */
  get position(): number {
    return this.floor;
  }

  /** Live messages held so far in this catch-up. */
  get heldCount(): number {
    return this.held?.length ?? 0;
  }

  get catchingUp(): boolean {
    return this.held !== undefined;
  }

  /** Starts holding live messages (a catch-up read begins). */
  hold(): void {
    this.held ??= [];
  }

  /**
   * A live message. "deliver": pass it on now; "gap": pass it on, but offsets
   * between the position and it are missing; "held": kept for release();
   * "duplicate": already delivered, drop it.
   */
  admit(offset: number, item: T): Admission {
    if (this.held !== undefined) {
      this.held.push({ offset, item });
      return "held";
    }
    if (offset <= this.floor) return "duplicate";
    const verdict = offset === this.floor + 1 ? "deliver" : "gap";
    this.floor = offset;
    return verdict;
  }

  /**
   * Ends the catch-up: releases `history` (messages read after `after`) and
   * then the held live messages not already covered, in offset order.
   */
  release(after: number, history: readonly Offsetted<T>[]): Release<T> {
    const items: T[] = [];
    let last = Math.max(after, 0);
    let contiguous = true;
    const take = (message: Offsetted<T>): void => {
      if (message.offset <= last) return;
      if (message.offset !== last + 1) contiguous = false;
      items.push(message.item);
      last = message.offset;
    };
    for (const message of history) take(message);
    const held = this.held ?? [];
    // Live messages arrive in broker order, which is offset order; the sort is
    // a guard that costs little when they already are.
    if (held.length > 1) held.sort((a, b) => a.offset - b.offset);
    for (const message of held) take(message);
    this.held = undefined;
    this.floor = last;
    return { items, last, contiguous };
  }
}
