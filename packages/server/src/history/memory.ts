// History kept in this process, for the embedded single-instance setup: per
// room an epoch, the last offset and the retained messages. The MemoryBroker
// owns one and appends to it as it publishes; with a shared backplane every
// instance would number a room on its own, so Redis keeps history there.

import { ProtocolError, type StreamPosition } from "crier-protocol";
import type { Envelope } from "../broker/envelope.js";
import {
  type HistoryOptions,
  type HistoryRead,
  type HistoryStore,
  META_MIN_TTL_MS,
  newEpoch,
  type ReadOptions,
} from "./history.js";

export interface MemoryHistoryOptions {
  /** The clock, in ms (default Date.now); injectable so tests can let time pass. */
  now?: () => number;
  /** How often idle rooms are dropped and expired messages freed (default 60000; 0 disables the timer). */
  sweepIntervalMs?: number;
}

interface Retained {
  envelope: Envelope;
  at: number;
}

interface RoomHistory {
  epoch: string;
  offset: number;
  /** Consecutive offsets, oldest first. */
  messages: Retained[];
  /** The ttl last asked for, so the sweep knows when the room is idle for good. */
  ttlMs: number;
  /** Last publish or read. */
  touchedAt: number;
}

export class MemoryHistory implements HistoryStore {
  private readonly now: () => number;
  private readonly rooms = new Map<string, RoomHistory>();
  private readonly timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: MemoryHistoryOptions = {}) {
    this.now = options.now ?? Date.now;
    const interval = options.sweepIntervalMs ?? 60_000;
    if (interval > 0) {
      this.timer = setInterval(() => this.sweep(), interval);
      this.timer.unref();
    }
  }

  async start(): Promise<void> {}

  isReady(): boolean {
    return !this.closed;
  }

  /**
   * Appends `envelope` to `room`, assigning the next offset, and returns it
   * numbered. Synchronous, so the MemoryBroker can append and queue the
   * delivery with nothing in between: offsets are assigned in publish order.
   */
  append(room: string, envelope: Envelope, options: HistoryOptions): { sent: Envelope; position: StreamPosition } {
    if (this.closed) throw new ProtocolError("unavailable", "the history store is closed");
    const now = this.now();
    const state = this.roomOf(room, options.ttlMs, now);
    state.offset += 1;
    const sent: Envelope = { ...envelope, offset: state.offset, epoch: state.epoch };
    state.messages.push({ envelope: sent, at: now });
    dropExpired(state, now);
    if (state.messages.length > options.size) state.messages.splice(0, state.messages.length - options.size);
    return { sent, position: { offset: state.offset, epoch: state.epoch } };
  }

  async read(room: string, options: ReadOptions & { ttlMs: number }): Promise<HistoryRead> {
    if (this.closed) throw new ProtocolError("unavailable", "the history store is closed");
    const now = this.now();
    // A read creates the epoch too: a subscriber to an empty room gets one that the first publish keeps.
    const state = this.roomOf(room, options.ttlMs, now);
    const position = { offset: state.offset, epoch: state.epoch };
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    // Retained messages are in time order, so the unexpired ones are a suffix.
    let first = 0;
    while (first < state.messages.length && isExpired(state.messages[first], now, options.ttlMs)) first++;
    const oldest = state.messages[first]?.envelope.offset ?? state.offset + 1;
    const base = state.messages[0]?.envelope.offset ?? 0;
    const slice = (from: number, to: number): Envelope[] =>
      state.messages.slice(from - base, to - base + 1).map((m) => m.envelope);

    const since = options.since;
    if (since === undefined) {
      const from = Math.max(oldest, state.offset - limit + 1);
      return { position, messages: limit > 0 ? slice(from, state.offset) : [], complete: true };
    }
    if (since.epoch !== state.epoch || since.offset > state.offset) return { position, messages: [], complete: false };
    const from = Math.max(since.offset + 1, oldest);
    const messages = limit > 0 ? slice(from, Math.min(state.offset, from + limit - 1)) : [];
    return { position, messages, complete: since.offset === state.offset || since.offset + 1 >= oldest };
  }

  /**
   * Frees expired messages and drops rooms idle for max(ttl, 24h): their
   * messages are long gone, and the epoch and offset were kept that long so a
   * live subscriber does not see offsets restart under the same epoch's name.
   */
  sweep(): void {
    const now = this.now();
    for (const [room, state] of this.rooms) {
      if (now - state.touchedAt >= Math.max(state.ttlMs, META_MIN_TTL_MS)) this.rooms.delete(room);
      else dropExpired(state, now);
    }
  }

  /** Rooms with state kept (for tests and metrics). */
  roomCount(): number {
    return this.rooms.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.rooms.clear();
  }

  private roomOf(room: string, ttlMs: number, now: number): RoomHistory {
    let state = this.rooms.get(room);
    if (state === undefined) {
      state = { epoch: newEpoch(), offset: 0, messages: [], ttlMs, touchedAt: now };
      this.rooms.set(room, state);
    }
    state.ttlMs = ttlMs;
    state.touchedAt = now;
    return state;
  }
}

function isExpired(message: Retained | undefined, now: number, ttlMs: number): boolean {
  return message !== undefined && now - message.at >= ttlMs;
}

function dropExpired(state: RoomHistory, now: number): void {
  let expired = 0;
  while (isExpired(state.messages[expired], now, state.ttlMs)) expired++;
  if (expired > 0) state.messages.splice(0, expired);
}
