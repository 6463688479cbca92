// Publishing with sequence numbers and checking what subscribers received
// against what publishers were acknowledged: for tests of delivery guarantees
// (every acknowledged message exactly once, in order) across faults.

import assert from "node:assert/strict";
import type { JsonValue } from "crier-protocol";
import { api, type CrierInstance } from "./crier.js";
import type { Received } from "./sdk-subscriber.js";
import { waitUntil } from "./wait.js";

// ---- publishers ---------------------------------------------------------------------

export interface Ack {
  publisher: number;
  seq: number;
  offset: number;
  epoch: string;
  /** performance.now() when the request was sent and when its answer came. */
  sentAt: number;
  answeredAt: number;
}

/** A backend publishing `{p, s}` through one instance's HTTP API, one request at a time. */
export class Publisher {
  readonly acks: Ack[] = [];
  /** 503 `unavailable` answers. */
  refused = 0;
  /** Requests that got no answer (the instance died under them), with why. */
  readonly failures: string[] = [];
  /** Anything else: a publish must be acknowledged or refused with `unavailable`. */
  readonly unexpected: string[] = [];
  private seq = 0;

  constructor(
    readonly index: number,
    readonly instance: CrierInstance,
    readonly room: string,
  ) {}

  /**
   * Publishes until `done()`. A publish that fails is not retried: its sequence
   * number is skipped and the next waits for the instance to be ready again, so
   * a failure never becomes a duplicate and the publisher does not spin.
   */
  async run(done: () => boolean): Promise<void> {
    while (!done()) {
      this.seq++;
      const data = { p: this.index, s: this.seq };
      const sentAt = performance.now();
      let outcome: "ack" | "refused" | "failed";
      try {
        const reply = await api(this.instance, "/api/publish", { room: this.room, data });
        const body = reply.body as { offset?: unknown; epoch?: unknown; error?: { code?: unknown } } | undefined;
        if (reply.status === 200 && typeof body?.offset === "number" && typeof body.epoch === "string") {
          this.acks.push({
            publisher: this.index,
            seq: this.seq,
            offset: body.offset,
            epoch: body.epoch,
            sentAt,
            answeredAt: performance.now(),
          });
          outcome = "ack";
        } else if (reply.status === 503 && body?.error?.code === "unavailable") {
          this.refused++;
          outcome = "refused";
        } else {
          this.unexpected.push(`${reply.status} ${JSON.stringify(reply.body)}`);
          outcome = "refused";
        }
      } catch (error) {
        this.failures.push(String(error instanceof Error && error.cause !== undefined ? error.cause : error));
        outcome = "failed";
      }
      if (outcome !== "ack" && !done()) {
        // Longer than the test's own waits while an instance is down plus its restart, so that on a
        // loaded machine the test's step fails first, saying which; done() ends the wait too.
        await waitUntil(
          `instance ${this.instance.port} is ready again`,
          async () => done() || (await isReady(this.instance)),
          90_000,
        );
      }
    }
  }
}

/** Whether the instance's /readyz says ready (false while it cannot be reached). */
export async function isReady(instance: CrierInstance): Promise<boolean> {
  try {
    return (await api(instance, "/readyz", undefined, { apiKey: null })).status === 200;
  } catch {
    return false;
  }
}

/** Publishes `{p, s}` for s = first..first+count-1 through `instance`, one at a time; all must be acknowledged. */
export async function publishSeries(
  instance: CrierInstance,
  room: string,
  publisher: number,
  count: number,
  first = 1,
): Promise<Ack[]> {
  const acks: Ack[] = [];
  for (let seq = first; seq < first + count; seq++) {
    const sentAt = performance.now();
    const reply = await api(instance, "/api/publish", { room, data: { p: publisher, s: seq } });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const body = reply.body as { offset: number; epoch: string };
    acks.push({ publisher, seq, offset: body.offset, epoch: body.epoch, sentAt, answeredAt: performance.now() });
  }
  return acks;
}

export function allAcks(publishers: Publisher[]): Ack[] {
  return publishers.flatMap((publisher) => publisher.acks);
}

/** The room's position according to its history: the offset of its newest message and the epoch. */
export async function roomPosition(instance: CrierInstance, room: string): Promise<{ offset: number; epoch: string }> {
  const reply = await api(instance, `/api/history?room=${encodeURIComponent(room)}&limit=1`);
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  const body = reply.body as { offset: number; epoch: string };
  return { offset: body.offset, epoch: body.epoch };
}

// ---- what subscribers received ---------------------------------------------

/** The `{p, s}` a Publisher sent (publisher index and sequence number), if that is what `data` is. */
export function payload(data: JsonValue): { p: number; s: number } | undefined {
  if (typeof data !== "object" || data === null || Array.isArray(data)) return undefined;
  const { p, s } = data;
  return typeof p === "number" && typeof s === "number" ? { p, s } : undefined;
}

/**
 * What is wrong with `got` as the messages of offsets from+1..to of `epoch`, in
 * order, each exactly once, each carrying what its publisher was acknowledged
 * for that offset; undefined when nothing is.
 */
export function contiguityProblem(
  got: readonly Received[],
  from: number,
  to: number,
  epoch: string,
  acked: ReadonlyMap<string, Ack>,
): string | undefined {
  if (got.length !== to - from) {
    const offsets = got.map((message) => message.offset);
    const duplicates = offsets.filter((offset, i) => offsets.indexOf(offset) !== i);
    const missing: number[] = [];
    for (let offset = from + 1; offset <= to && missing.length < 10; offset++) {
      if (!offsets.includes(offset)) missing.push(offset);
    }
    return `${got.length} messages instead of ${to - from} (offsets ${from + 1}..${to}); missing ${JSON.stringify(missing)}, duplicated ${JSON.stringify(duplicates.slice(0, 10))}`;
  }
  for (const [i, message] of got.entries()) {
    const expected = from + 1 + i;
    if (message.offset !== expected || message.epoch !== epoch) {
      return `message #${i} has offset ${message.offset} (epoch ${message.epoch}) where ${expected} (epoch ${epoch}) was due`;
    }
    const ack = acked.get(`${epoch}/${expected}`);
    const data = payload(message.data);
    if (ack !== undefined && (data?.p !== ack.publisher || data.s !== ack.seq)) {
      return `offset ${expected} carries ${JSON.stringify(message.data)}, but publisher ${ack.publisher} was acknowledged seq ${ack.seq} there`;
    }
  }
  return undefined;
}

/** What is wrong with the per-publisher order of `got` (each publisher's sequence numbers strictly increasing). */
export function sequenceProblem(got: readonly Received[]): string | undefined {
  const last = new Map<number, number>();
  for (const message of got) {
    const data = payload(message.data);
    if (data === undefined) return `unexpected payload ${JSON.stringify(message.data)}`;
    const previous = last.get(data.p) ?? 0;
    if (data.s <= previous) return `publisher ${data.p}: seq ${data.s} after seq ${previous}`;
    last.set(data.p, data.s);
  }
  return undefined;
}

/** Acknowledgements by epoch and offset. */
export function ackIndex(acks: readonly Ack[]): Map<string, Ack> {
  return new Map(acks.map((ack) => [`${ack.epoch}/${ack.offset}`, ack]));
}

/** Fails listing the first problems, so a failure says which clients and what. */
export function assertNoProblems(problems: string[], what: string): void {
  assert.equal(problems.length, 0, `${problems.length} ${what}:\n${problems.slice(0, 10).join("\n")}`);
}
