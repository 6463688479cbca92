// A room's history in JetStream, shared by NatsBroker.append (writes) and
// NatsHistory (reads). One stream per deployment holds every room:
//
// - `crier.hist.<scope>.<channel>`: the room's messages, each the encoded
//   envelope with its offset and epoch. The stream republishes each stored
//   message to the room's live subject, so subscribers receive exactly what
//   was stored, in the stream's order, and a refused append reaches no one.
// - Offsets are per room and contiguous: an append names the stream sequence
//   of the room's last message (Nats-Expected-Last-Subject-Sequence) and is
//   refused if another instance appended first; it then rereads the head and
//   tries again with the next offset. JetStream's own sequence is global.
// - Each message carries the sequence of the room's previous one (Crier-Prev)
//   and the retention asked for (Crier-Size), so a read walks back from the
//   head without a consumer, and trims by size as the newest append asked.
// - `crier.epoch.<scope>.<channel>`: the epoch of a room read before its first
//   message, so that first message keeps it; purged once the room has messages.
//
// The stream's max_age keeps a room's newest message (and so its offset and
// epoch) for max(ttl, 24h) after its last publish; reads drop older messages
// by the ttl they are given, as the Redis read does.

import { ProtocolError, type StreamPosition } from "crier-protocol";
import {
  headers,
  type JetStreamClient,
  type JetStreamManager,
  NatsError,
  RetentionPolicy,
  StorageType,
  type StoredMsg,
} from "nats";
import { decodeEnvelope, type Envelope, encodeEnvelope } from "../broker/envelope.js";
import { messageOf } from "../describe-error.js";
import { apiCode, type NatsLink, type NatsNames, NO_MESSAGE, WRONG_LAST_SEQUENCE } from "../nats/connection.js";
import { META_MIN_TTL_MS, newEpoch } from "./history.js";

const PREV = "Crier-Prev";
const SIZE = "Crier-Size";

/** The newest message of a room: where the next append goes. */
export interface RoomHead {
  /** Stream sequence of the room's newest message; 0 when it has none. */
  seq: number;
  offset: number;
  epoch: string;
  /** Retention the newest append asked for. */
  size: number;
  /** The newest message itself, when there is one. */
  message?: Stored;
}

/** A message as stored: the envelope, when it was stored and the room's message before it. */
interface Stored {
  envelope: Envelope;
  time: number;
  /** Stream sequence of the room's previous message; 0 for its first. */
  prev: number;
}

export interface RoomLogOptions {
  /** Messages kept per room at most, across namespaces (the stream's max_msgs_per_subject). */
  maxSize: number;
  /** The longest history ttl configured, in ms: the stream keeps messages max(this, 24h). */
  maxTtlMs: number;
  /**
   * Use an existing stream as it is, with the retention the instances gave it,
   * and create it with these limits only if it is missing (CrierPublisher,
   * which may not know every namespace's history).
   */
  adopt?: boolean;
}

export class RoomLog {
  private readonly link: NatsLink;
  private readonly names: NatsNames;
  private readonly options: RoomLogOptions;

  constructor(link: NatsLink, names: NatsNames, options: RoomLogOptions) {
    this.link = link;
    this.names = names;
    this.options = options;
  }

  /** Creates the stream, or updates its limits to what this instance is configured with. */
  async ensureStream(jsm: JetStreamManager): Promise<void> {
    const { names } = this;
    const config = {
      name: names.stream,
      subjects: [names.historySubjects, names.epochSubjects],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_msgs_per_subject: Math.max(1, this.options.maxSize),
      max_age: Math.max(this.options.maxTtlMs, META_MIN_TTL_MS) * 1_000_000,
      republish: { src: names.historySubjects, dest: names.liveSubjects.replace(/\*$/, "{{wildcard(1)}}") },
    };
    try {
      const info = await jsm.streams.info(names.stream);
      const current = info.config;
      if (this.options.adopt === true) return;
      if (current.max_msgs_per_subject !== config.max_msgs_per_subject || current.max_age !== config.max_age) {
        await jsm.streams.update(names.stream, { ...current, ...config });
      }
    } catch (err) {
      if (!(err instanceof NatsError && /stream not found/i.test(err.message))) throw err;
      await jsm.streams.add(config);
    }
  }

  /** The room's newest message, or its epoch (created if needed) when it has none. */
  async head(jsm: JetStreamManager, js: JetStreamClient, channel: string): Promise<RoomHead> {
    const stored = await this.get(jsm, { last_by_subj: this.names.history(channel) });
    if (stored !== undefined) return headOf(stored);
    return { seq: 0, offset: 0, epoch: await this.epochOf(jsm, js, channel), size: this.options.maxSize };
  }

  /**
   * Appends `envelope` as the message after `head`. Resolves with the new head,
   * or undefined when another instance appended first (reread the head and retry).
   */
  async append(
    js: JetStreamClient,
    channel: string,
    head: RoomHead,
    envelope: Envelope,
    size: number,
  ): Promise<RoomHead | undefined> {
    const offset = head.offset + 1;
    const sent: Envelope = { ...envelope, offset, epoch: head.epoch };
    const h = headers();
    h.set(PREV, String(head.seq));
    h.set(SIZE, String(size));
    try {
      const ack = await js.publish(this.names.history(channel), encodeEnvelope(sent), {
        headers: h,
        expect: { lastSubjectSequence: head.seq },
        timeout: this.link.timeoutMs,
      });
      return {
        seq: ack.seq,
        offset,
        epoch: head.epoch,
        size,
        message: { envelope: sent, time: Date.now(), prev: head.seq },
      };
    } catch (err) {
      if (apiCode(err) === WRONG_LAST_SEQUENCE) return undefined;
      throw err;
    }
  }

  /** Whether the stream still holds `head`'s message (at its sequence, the same envelope), or the room has moved to another epoch. */
  async holds(jsm: JetStreamManager, channel: string, head: RoomHead): Promise<boolean> {
    const sent = head.message?.envelope;
    if (sent === undefined || head.seq === 0) return true;
    const stored = await this.get(jsm, { seq: head.seq });
    if (stored === undefined) {
      // Gone: trimmed by retention behind a newer head, or lost with the store's tail.
      const room = await this.get(jsm, { last_by_subj: this.names.history(channel) });
      return room !== undefined && room.seq > head.seq && (storedOf(room).envelope.offset ?? 0) > head.offset;
    }
    const { envelope } = storedOf(stored);
    return (
      envelope.room === sent.room &&
      envelope.offset === sent.offset &&
      envelope.epoch === sent.epoch &&
      envelope.node === sent.node &&
      envelope.data === sent.data
    );
  }

  /** Forgets the room's history and epoch: the next read or append starts a new epoch. */
  async purge(jsm: JetStreamManager, channel: string): Promise<void> {
    await jsm.streams.purge(this.names.stream, { filter: this.names.history(channel) });
    await jsm.streams.purge(this.names.stream, { filter: this.names.epoch(channel) });
  }

  /** After a room's first message: its epoch now lives in its messages. */
  async dropEpochMarker(jsm: JetStreamManager, channel: string): Promise<void> {
    await jsm.streams.purge(this.names.stream, { filter: this.names.epoch(channel) });
  }

  /**
   * Messages of the room newer than `afterOffset`, oldest first, walking back
   * from the head: retained (within the newest append's size), unexpired
   * (younger than ttlMs) and still stored. `oldest` is the oldest offset the
   * walk could reach (head.offset + 1 when none).
   */
  async walkBack(
    jsm: JetStreamManager,
    head: RoomHead,
    afterOffset: number,
    ttlMs: number,
    max: number,
  ): Promise<{ messages: Envelope[]; oldest: number }> {
    const cutoff = Date.now() - ttlMs;
    const floor = head.offset - head.size;
    const messages: Envelope[] = [];
    let oldest = head.offset + 1;
    let current = head.message;
    while (current !== undefined && messages.length < max) {
      const offset = current.envelope.offset ?? 0;
      if (offset <= afterOffset || offset <= floor || current.time <= cutoff) break;
      messages.push(current.envelope);
      oldest = offset;
      if (current.prev === 0) break;
      // Gone (trimmed or expired by the stream): everything older is gone too.
      const previous = await this.get(jsm, { seq: current.prev });
      current = previous === undefined ? undefined : storedOf(previous);
    }
    return { messages: messages.reverse(), oldest };
  }

  /**
   * Up to `count` messages of the room from offset `from` on, oldest first, as
   * readWalk but in two steps that do not grow with the distance from the
   * head: a binary search over stream sequences for the first message at or
   * after `from` (gets of "the room's next message at or after seq N"),
   * then one ordered consumer fetching the run from there.
   */
  async readForward(
    jsm: JetStreamManager,
    js: JetStreamClient,
    channel: string,
    head: RoomHead,
    from: number,
    count: number,
    ttlMs: number,
  ): Promise<{ messages: Envelope[]; oldest: number }> {
    const subject = this.names.history(channel);
    const cutoff = Date.now() - ttlMs;
    const floor = head.offset - head.size;
    let lo = 1;
    let hi = head.seq;
    let start: { seq: number; offset: number } = { seq: head.seq, offset: head.offset };
    while (lo <= hi) {
      const mid = Math.floor((lo + hi) / 2);
      const next = await this.next(jsm, subject, mid);
      if (next === undefined || next.seq > head.seq) {
        hi = mid - 1;
        continue;
      }
      const offset = storedOf(next).envelope.offset ?? 0;
      if (offset >= from) {
        start = { seq: next.seq, offset };
        hi = mid - 1;
      } else lo = next.seq + 1;
    }
    const wanted = Math.min(count, head.offset - start.offset + 1);
    const messages: Envelope[] = [];
    let oldest = head.offset + 1;
    if (wanted <= 0) return { messages, oldest };
    const consumer = await js.consumers.get(this.names.stream, { filterSubjects: subject, opt_start_seq: start.seq });
    const batch = await consumer.fetch({ max_messages: wanted, expires: this.link.timeoutMs });
    for await (const msg of batch) {
      const envelope = decodeEnvelope(msg.string());
      const offset = envelope.offset ?? 0;
      if (msg.info.timestampNanos / 1_000_000 > cutoff && offset > floor && offset >= from) {
        if (messages.length === 0) oldest = offset;
        messages.push(envelope);
      }
      if (offset >= head.offset || messages.length >= count) break;
    }
    await consumer.delete().catch(() => {});
    return { messages, oldest };
  }

  /** The room's first message at or after stream sequence `seq`. */
  private next(jsm: JetStreamManager, subject: string, seq: number): Promise<StoredMsg | undefined> {
    // next_by_subj is in the server's MSG.GET API since 2.9; the client's type lists only seq and last_by_subj.
    const query = { seq, next_by_subj: subject };
    return this.get(jsm, query);
  }

  /** The epoch of a room with no messages: the marker's, or a new one written as the marker. */
  private async epochOf(jsm: JetStreamManager, js: JetStreamClient, channel: string): Promise<string> {
    const subject = this.names.epoch(channel);
    for (;;) {
      const marker = await this.get(jsm, { last_by_subj: subject });
      if (marker !== undefined) return marker.string();
      const epoch = newEpoch();
      try {
        await js.publish(subject, epoch, { expect: { lastSubjectSequence: 0 }, timeout: this.link.timeoutMs });
        return epoch;
      } catch (err) {
        // Another instance wrote the marker first: read it.
        if (apiCode(err) !== WRONG_LAST_SEQUENCE) throw err;
      }
    }
  }

  private async get(
    jsm: JetStreamManager,
    query: { seq: number } | { last_by_subj: string },
  ): Promise<StoredMsg | undefined> {
    try {
      return await jsm.streams.getMessage(this.names.stream, query);
    } catch (err) {
      if (apiCode(err) === NO_MESSAGE) return undefined;
      throw err;
    }
  }
}

function storedOf(stored: StoredMsg): Stored {
  let envelope: Envelope;
  try {
    envelope = decodeEnvelope(stored.string());
  } catch (err) {
    throw new ProtocolError("internal", `a stored history message is not an envelope: ${messageOf(err)}`);
  }
  return { envelope, time: stored.time.getTime(), prev: Number(stored.header?.get(PREV) ?? "0") || 0 };
}

function headOf(stored: StoredMsg): RoomHead {
  const message = storedOf(stored);
  const size = Number(stored.header?.get(SIZE) ?? "");
  return {
    seq: stored.seq,
    offset: message.envelope.offset ?? 0,
    epoch: message.envelope.epoch ?? "",
    size: Number.isInteger(size) && size > 0 ? size : Number.MAX_SAFE_INTEGER,
    message,
  };
}

/** The position a head stands for. */
export function positionOf(head: RoomHead): StreamPosition {
  return { offset: head.offset, epoch: head.epoch };
}
