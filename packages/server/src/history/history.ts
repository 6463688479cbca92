// The history seam (ARCHITECTURE.md "Seams"): per-room offsets, an epoch, and
// the retained messages of rooms whose namespace keeps history. Messages are
// appended by the engine's broker (Broker.append: append and publish in one
// step, so the order of offsets is the order every subscriber sees, on every
// instance); a store reads them back.

import { randomBytes } from "node:crypto";
import type { StreamPosition } from "crier-protocol";
import type { Envelope } from "../broker/envelope.js";

export interface HistoryOptions {
  /** Messages retained per room (the oldest go first). */
  size: number;
  /** How long a message is retained, in milliseconds. */
  ttlMs: number;
}

export interface HistoryRead {
  /** The room's position when read: the offset of its newest message (0 when none) and its epoch. */
  position: StreamPosition;
  /** Retained messages, oldest first, each with `offset` (and `epoch`) set. */
  messages: Envelope[];
  /**
   * With `since`: whether `messages` are exactly every message after it (same
   * epoch, nothing expired or trimmed in between). Without `since`: true.
   */
  complete: boolean;
}

export interface ReadOptions {
  /** Read messages after this position (exclusive); with a different epoch the read is not complete and returns none. */
  since?: StreamPosition;
  /** At most this many messages: the first ones after `since`, or the latest ones without it. */
  limit?: number;
}

export interface HistoryStore {
  /** Connects; rejects naming what cannot be reached. */
  start(): Promise<void>;
  /** Whether the store is reachable now. */
  isReady(): boolean;
  /** Reads retained messages and the current position. */
  read(room: string, options: ReadOptions & { ttlMs: number }): Promise<HistoryRead>;
  /** Idempotent. */
  close(): Promise<void>;
}

/**
 * A room's epoch and last offset outlive its messages by at least this long
 * after the last publish or read, so live subscribers do not see offsets
 * restart merely because a quiet room's messages expired.
 */
export const META_MIN_TTL_MS = 24 * 60 * 60 * 1000;

/** A fresh epoch: 72 random bits, base64url (no character needs escaping in JSON). */
export function newEpoch(): string {
  return randomBytes(9).toString("base64url");
}
