// What a client or a backend can ask of a room: who is in it (presence), how
// many (presence stats) and what was said (history). Shared by sessions and the HTTP API, with the same
// errors for a namespace that does not keep them.

import {
  type HistoryMessage,
  type HistoryReply,
  type JsonValue,
  type Member,
  ProtocolError,
  type StreamPosition,
} from "crier-protocol";
import type { RoomPolicy } from "../auth/policy.js";
import type { HistoryOptions, HistoryStore } from "../history/history.js";
import type { PresenceStats, PresenceStore } from "../presence/presence.js";

/** `history` without a limit returns this many of the latest messages (docs/protocol.md). */
const DEFAULT_HISTORY_LIMIT = 100;

export class RoomQueries {
  private readonly policy: RoomPolicy;
  private readonly historyStore: HistoryStore | undefined;
  private readonly presenceStore: PresenceStore | undefined;
  private readonly historyOptions: (room: string) => HistoryOptions | undefined;

  constructor(
    policy: RoomPolicy,
    historyStore: HistoryStore | undefined,
    presenceStore: PresenceStore | undefined,
    historyOptions: (room: string) => HistoryOptions | undefined,
  ) {
    this.policy = policy;
    this.historyStore = historyStore;
    this.presenceStore = presenceStore;
    this.historyOptions = historyOptions;
  }

  /** The room's members, cluster-wide. */
  presence(room: string): Promise<Member[]> {
    return this.presenceOf(room).list(room);
  }

  /** The room's counts, cluster-wide, without listing it (O(1) in Redis). */
  presenceStats(room: string): Promise<PresenceStats> {
    return this.presenceOf(room).stats(room);
  }

  private presenceOf(room: string): PresenceStore {
    if (!this.policy.options(room).presence || this.presenceStore === undefined) {
      throw new ProtocolError(
        "bad_request",
        `presence is not enabled in ${this.policy.describe(room)}: set "presence": true in its namespace configuration`,
      );
    }
    return this.presenceStore;
  }

  /** Retained messages after `since`, or the latest `limit` without it, oldest first. */
  async history(room: string, since: StreamPosition | undefined, limit: number | undefined): Promise<HistoryReply> {
    const options = this.historyOptions(room);
    if (options === undefined || this.historyStore === undefined) {
      throw new ProtocolError(
        "bad_request",
        `history is not kept in ${this.policy.describe(room)}: set "history": {"size": N, "ttl": "10m"} in its namespace configuration`,
      );
    }
    const read = await this.historyStore.read(room, {
      since,
      limit: Math.min(limit ?? DEFAULT_HISTORY_LIMIT, options.size),
      ttlMs: options.ttlMs,
    });
    return {
      op: "history",
      room,
      offset: read.position.offset,
      epoch: read.position.epoch,
      messages: read.messages.map((message) => {
        const entry: HistoryMessage = {
          room,
          data: JSON.parse(message.data) as JsonValue,
          offset: message.offset ?? 0,
        };
        if (message.from !== undefined && message.from !== "") entry.from = message.from;
        return entry;
      }),
    };
  }
}
