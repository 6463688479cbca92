// The one home of recovery (docs/protocol.md "Delivery semantics"): how a room
// with history is read back after a position, page by page. Two users share it:
// CatchUp, a subscriber's `subscribe` with `since`, and RoomOrder, one room's
// offsets on this instance, which repairs a gap the backplane left. Neither
// reads history any other way.

import type { StreamPosition } from "crier-protocol";
import type { Envelope } from "../broker/envelope.js";
import type { HistoryOptions, HistoryRead, HistoryStore } from "../history/history.js";

/** Messages read from history per page of a replay (and of a gap repair). */
export const PAGE_SIZE = 500;

/** How a paging read ended: every message up to the target was yielded, or history no longer has them. */
export type PagesEnd = "done" | "lost";

export class Recovery {
  private readonly store: HistoryStore | undefined;
  private readonly optionsOf: (room: string) => HistoryOptions | undefined;

  /** `optionsOf`: how much of a room is kept, undefined when its namespace keeps no history. */
  constructor(store: HistoryStore | undefined, optionsOf: (room: string) => HistoryOptions | undefined) {
    this.store = store;
    this.optionsOf = optionsOf;
  }

  keepsHistory(room: string): boolean {
    return this.store !== undefined && this.optionsOf(room) !== undefined;
  }

  /**
   * Without `since`: the room's position (one message is the least a read asks
   * for). With it: the position and the first page after it. Undefined when
   * the room keeps no history.
   */
  async read(room: string, since: StreamPosition | undefined): Promise<HistoryRead | undefined> {
    const options = this.optionsOf(room);
    if (options === undefined || this.store === undefined) return undefined;
    return this.store.read(room, {
      since,
      limit: since === undefined ? 1 : Math.min(PAGE_SIZE, options.size),
      ttlMs: options.ttlMs,
    });
  }

  /**
   * Every message after `since` up to `upTo` (the position of the read that
   * found them missing), in offset order, a page at a time: the caller takes
   * a page before the next is read. `first` is a read already made after
   * `since`. Ends "lost" when history no longer reaches back (trimmed or
   * expired), its epoch changed, or it stands behind `since` (Redis back from
   * an older snapshot, a lagging replica promoted: its next offsets would
   * repeat ones already delivered).
   */
  async *pages(
    room: string,
    since: StreamPosition,
    upTo: number,
    first?: HistoryRead,
  ): AsyncGenerator<Envelope[], PagesEnd> {
    let after = since.offset;
    let read = first ?? (await this.read(room, since));
    for (;;) {
      if (read === undefined || !read.complete || read.position.epoch !== since.epoch) return "lost";
      if (read.position.offset < since.offset) return "lost";
      const page: Envelope[] = [];
      for (const message of read.messages) {
        const offset = message.offset ?? 0;
        if (offset <= after) continue;
        if (offset !== after + 1) return "lost";
        page.push(message);
        after = offset;
      }
      if (page.length > 0) yield page;
      if (after >= upTo) return "done";
      if (page.length === 0) return "lost";
      read = await this.read(room, { offset: after, epoch: since.epoch });
    }
  }
}
