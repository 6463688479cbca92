// Replays what a resubscribing client missed, page by page, at the pace its
// socket drains: a client far behind is neither closed as a slow consumer nor
// allowed to pull the whole history into server memory at once. Live messages
// stay held by the session's gate until the replay is done.

import type { StreamPosition } from "crier-protocol";
import type { Envelope } from "../broker/envelope.js";
import type { HistoryRead } from "../history/history.js";
import { MessageFrame, type OutboundFrame } from "../hub/outbound-frame.js";

export interface ReplayTarget {
  /** Sends one frame, first waiting while the socket's queue is past its bound; false once the connection is gone. */
  sendPaced(frame: OutboundFrame): Promise<boolean>;
}

/** Reads the page of messages after `after`. */
export type PageReader = (after: StreamPosition) => Promise<HistoryRead | undefined>;

export type ReplayOutcome =
  /** Every message up to the position was sent; `last` is the last offset sent. */
  | { kind: "done"; last: number }
  /** History no longer reaches back to a page still to send (trimmed or expired meanwhile). */
  | { kind: "lost" }
  /** The connection closed during the replay. */
  | { kind: "closed" };

export async function replay(
  room: string,
  since: number,
  position: StreamPosition,
  firstPage: readonly Envelope[],
  readPage: PageReader,
  target: ReplayTarget,
): Promise<ReplayOutcome> {
  let last = since;
  let page = firstPage;
  for (;;) {
    for (const message of page) {
      const offset = message.offset ?? 0;
      if (offset <= last) continue;
      if (offset !== last + 1) return { kind: "lost" };
      if (!(await target.sendPaced(new MessageFrame(room, message)))) return { kind: "closed" };
      last = offset;
    }
    if (last >= position.offset || page.length === 0) return { kind: "done", last };
    const next = await readPage({ offset: last, epoch: position.epoch });
    if (next === undefined || !next.complete || next.position.epoch !== position.epoch) return { kind: "lost" };
    page = next.messages;
  }
}
