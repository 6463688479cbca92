// The client's subscriptions, by room: sent when the client connects and again
// after each reconnect (with `since`), retried with backoff when a resubscribe
// hits a passing problem, and, for those that keep a member list, followed by a
// `presence` read each time the server confirms them. The server's own
// subscriptions (listed in `connected`, confirmed by `subscribed` pushes) are
// kept here too; the client never sends `subscribe` for them, but gives their
// positions with `connect` so the server resumes them (docs/protocol.md).

import {
  type ErrorCode,
  type ErrorReply,
  isValidRoom,
  type JoinPush,
  type LeavePush,
  type MessagePush,
  ProtocolError,
  type StreamPosition,
  type SubscribedReply,
} from "crier-protocol";
import { type BackoffOptions, backoffDelay } from "./backoff.js";
import { CrierClientError } from "./errors.js";
import type { Requests } from "./requests.js";
import { type MessageHandler, type SubscribeOptions, Subscription } from "./subscription.js";
import { startTimer, type Timer } from "./timer.js";

/** Errors in reply to a resubscribe that are worth retrying on the same connection. */
const TRANSIENT = new Set<ErrorCode>(["unavailable", "rate_limited", "internal"]);

function isTransient(error: Error): boolean {
  if (error instanceof ProtocolError) return TRANSIENT.has(error.code);
  return error instanceof CrierClientError && error.code === "timeout";
}

/** Failures that mean "this connection is gone", after which the next `connected` resubscribes. */
export function isConnectionLoss(error: Error): boolean {
  return error instanceof CrierClientError && (error.code === "disconnected" || error.code === "closed");
}

export function checkRoom(room: string): void {
  if (!isValidRoom(room)) {
    throw new ProtocolError("bad_request", "room must be 1-200 characters of A-Z a-z 0-9 _ - : . @ / =");
  }
}

interface ResubscribeRetry {
  attempt: number;
  timer: Timer | undefined;
}

export class Subscriptions {
  readonly #requests: Requests;
  readonly #backoff: BackoffOptions;
  /** Whether the client is connected now (subscribes wait for the next `connected` otherwise). */
  readonly #connected: () => boolean;
  /** Told of each subscription the server made that the client did not know (the client's `subscription` event). */
  readonly #made: (subscription: Subscription) => void;
  readonly #byRoom = new Map<string, Subscription>();
  readonly #retries = new Map<Subscription, ResubscribeRetry>();
  /** The rooms the server subscribed the current (or last) connection to. */
  #serverRooms: readonly string[] = [];

  constructor(
    requests: Requests,
    backoff: BackoffOptions,
    connected: () => boolean,
    made: (subscription: Subscription) => void,
  ) {
    this.#requests = requests;
    this.#backoff = backoff;
    this.#connected = connected;
    this.#made = made;
  }

  add(room: string, handler: MessageHandler, options: SubscribeOptions): Subscription {
    checkRoom(room);
    if (this.#byRoom.has(room)) {
      throw new ProtocolError(
        "already_subscribed",
        `already subscribed to '${room}'; add a listener with subscription.on("message") instead`,
      );
    }
    const subscription = new Subscription(room, handler, options, (s) => this.#unsubscribe(s));
    this.#byRoom.set(room, subscription);
    this.#send(subscription);
    return subscription;
  }

  get(room: string): Subscription | undefined {
    return this.#byRoom.get(room);
  }

  /** For `connect`: where the server-side subscriptions of the last connection are, so the server resumes them. */
  positions(): Record<string, StreamPosition> | undefined {
    const positions: Record<string, StreamPosition> = {};
    let found = false;
    for (const room of this.#serverRooms) {
      const position = this.#byRoom.get(room)?.position;
      if (position) positions[room] = position;
      found ||= position !== undefined;
    }
    return found ? positions : undefined;
  }

  /**
   * A new connection is up; `serverRooms` are the server's subscriptions on it (`connected`'s
   * `subs`). The client's own are sent again, except those the server now makes itself;
   * server-side ones it no longer makes end; new ones are announced.
   */
  connected(serverRooms: readonly string[] = []): void {
    this.#serverRooms = serverRooms;
    for (const subscription of [...this.#byRoom.values()]) {
      if (serverRooms.includes(subscription.room)) continue;
      if (subscription.serverSide) this.ended(subscription.room);
      else this.#send(subscription);
    }
    for (const room of serverRooms) this.#adopt(room);
  }

  /**
   * A `subscribed` push confirms a server-side subscription. One the app has unsubscribed
   * from meanwhile is not brought back: only `connected` announces new ones.
   */
  pushed(frame: SubscribedReply): boolean {
    const subscription = this.#byRoom.get(frame.room);
    if (subscription !== undefined) this.#confirmed(subscription, frame, subscription.position);
    return subscription !== undefined;
  }

  /** An `error` push naming a server-side subscription's room: it failed. False when no such subscription waits. */
  refused(frame: ErrorReply): boolean {
    // Only the server's own subscriptions' errors carry a room ("" names none).
    const subscription = this.#byRoom.get(frame.room ?? "");
    if (subscription === undefined) return false;
    this.#remove(subscription);
    subscription.handleError(new ProtocolError(frame.code, frame.message), true);
    return true;
  }

  /** The server ended the subscription to `room` (an `unsubscribed` push, or a server-side one not made again). */
  ended(room: string): void {
    const subscription = this.#byRoom.get(room);
    if (subscription === undefined) return;
    this.#remove(subscription);
    subscription.end(undefined, true);
  }

  /** A subscription the server makes to `room`, unless one is known: made here and announced. */
  #adopt(room: string): void {
    if (this.#byRoom.has(room)) return;
    const subscription = new Subscription(room, undefined, {}, (s) => this.#unsubscribe(s), true);
    this.#byRoom.set(room, subscription);
    this.#made(subscription);
  }

  /** The connection dropped: retries stop, and each subscription waits for the next connection. */
  connectionLost(): void {
    this.cancelRetries();
    for (const subscription of this.#byRoom.values()) subscription.handleConnectionLost();
  }

  /** close(): every subscription ends with `error`. */
  endAll(error: Error): void {
    for (const subscription of this.#byRoom.values()) subscription.end(error);
    this.#byRoom.clear();
    this.#serverRooms = [];
  }

  message(frame: MessagePush): void {
    this.#byRoom.get(frame.room)?.handleMessage(frame);
  }

  memberPush(frame: JoinPush | LeavePush): void {
    this.#byRoom.get(frame.room)?.handleMemberPush(frame);
  }

  cancelRetries(): void {
    for (const retry of this.#retries.values()) retry.timer?.cancel();
    this.#retries.clear();
  }

  #send(subscription: Subscription): void {
    // Not connected: the next `connected` sends every registered subscription.
    if (!this.#connected()) return;
    const since = subscription.position;
    this.#requests.command(
      { op: "subscribe", room: subscription.room, since },
      "subscribed",
      {
        reply: (frame) => {
          if (this.#current(subscription)) this.#confirmed(subscription, frame, since);
        },
        fail: (error) => this.#failed(subscription, error),
      },
      false,
    );
  }

  #confirmed(subscription: Subscription, frame: SubscribedReply, since: StreamPosition | undefined): void {
    this.#retries.delete(subscription);
    subscription.handleSubscribed(frame, since);
    if (subscription.tracksMembers) this.#readMembers(subscription);
  }

  /** After each `subscribed`: the member list is read anew (pushes meanwhile are held, then applied). */
  #readMembers(subscription: Subscription): void {
    this.#requests.command(
      { op: "presence", room: subscription.room },
      "presence",
      {
        reply: (frame) => {
          if (this.#current(subscription)) subscription.handleMembers(frame.members);
        },
        fail: (error) => {
          // Gone with the connection: the next resubscribe reads them again.
          if (!this.#current(subscription) || isConnectionLoss(error)) return;
          subscription.handleMembers(undefined);
          subscription.handleError(error, false);
        },
      },
      false,
    );
  }

  #failed(subscription: Subscription, error: Error): void {
    if (!this.#current(subscription)) return;
    if (isConnectionLoss(error)) return;
    if (subscription.confirmed && isTransient(error)) {
      // A resubscribe after a reconnect hit a passing problem (broker down, rate limit):
      // keep the subscription and try again with backoff, telling the app meanwhile.
      subscription.handleError(error, false);
      const retry = this.#retries.get(subscription) ?? { attempt: 0, timer: undefined };
      this.#retries.set(subscription, retry);
      retry.timer?.cancel();
      retry.timer = startTimer(backoffDelay(retry.attempt, this.#backoff), () => {
        retry.timer = undefined;
        if (this.#current(subscription)) this.#send(subscription);
      });
      retry.attempt += 1;
      return;
    }
    this.#remove(subscription);
    subscription.handleError(error, true);
    if (error instanceof CrierClientError && error.code === "timeout") {
      // The server may still apply the subscribe we gave up on; do not leave it there.
      this.#requests.command({ op: "unsubscribe", room: subscription.room }, "ok", { reply() {}, fail() {} }, false);
    }
  }

  async #unsubscribe(subscription: Subscription): Promise<void> {
    if (!this.#current(subscription)) return;
    this.#remove(subscription);
    subscription.end();
    // The server forgets a connection's subscriptions when it drops: nothing to undo while offline.
    if (!this.#connected()) return;
    try {
      await this.#requests.request({ op: "unsubscribe", room: subscription.room }, "ok");
    } catch (error) {
      if (error instanceof ProtocolError && error.code === "not_subscribed") return;
      if (error instanceof Error && isConnectionLoss(error)) return;
      throw error;
    }
  }

  /** Whether `subscription` is still the one for its room (not unsubscribed, failed or replaced). */
  #current(subscription: Subscription): boolean {
    return this.#byRoom.get(subscription.room) === subscription;
  }

  /** Forgets `subscription` (its retry too): the caller ends it. */
  #remove(subscription: Subscription): void {
    this.#byRoom.delete(subscription.room);
    this.#retries.get(subscription)?.timer?.cancel();
    this.#retries.delete(subscription);
  }
}
