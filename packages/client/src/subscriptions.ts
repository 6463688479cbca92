// The client's subscriptions, by room: sent when the client connects and again
// after each reconnect (with `since`), retried with backoff when a resubscribe
// hits a passing problem, and, for those that keep a member list, followed by a
// `presence` read each time the server confirms them.

import {
  type ErrorCode,
  isValidRoom,
  type JoinPush,
  type LeavePush,
  type MessagePush,
  ProtocolError,
  type SubscribeCommand,
} from "crier-protocol";
import { type BackoffOptions, backoffDelay } from "./backoff.js";
import { CrierClientError } from "./errors.js";
import { isReply, type Requests } from "./requests.js";
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
  readonly #byRoom = new Map<string, Subscription>();
  readonly #retries = new Map<Subscription, ResubscribeRetry>();

  constructor(requests: Requests, backoff: BackoffOptions, connected: () => boolean) {
    this.#requests = requests;
    this.#backoff = backoff;
    this.#connected = connected;
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

  /** A new connection is up: every subscription is sent again. */
  resubscribeAll(): void {
    for (const subscription of this.#byRoom.values()) this.#send(subscription);
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
    const command: SubscribeCommand = { op: "subscribe", room: subscription.room };
    if (since !== undefined) command.since = since;
    this.#requests.command(
      command,
      {
        reply: (frame) => {
          if (this.#byRoom.get(subscription.room) !== subscription) return;
          if (!isReply(frame, "subscribed")) {
            this.#failed(subscription, new CrierClientError("bad_frame", `'${frame.op}' in reply to 'subscribe'`));
            return;
          }
          this.#retries.delete(subscription);
          subscription.handleSubscribed(frame, since);
          if (subscription.tracksMembers) this.#readMembers(subscription);
        },
        fail: (error) => this.#failed(subscription, error),
      },
      false,
    );
  }

  /** After each `subscribed`: the member list is read anew (pushes meanwhile are held, then applied). */
  #readMembers(subscription: Subscription): void {
    this.#requests.command(
      { op: "presence", room: subscription.room },
      {
        reply: (frame) => {
          if (this.#byRoom.get(subscription.room) !== subscription) return;
          if (isReply(frame, "presence")) subscription.handleMembers(frame.members);
          else {
            subscription.handleMembers(undefined);
            subscription.handleError(new CrierClientError("bad_frame", `'${frame.op}' in reply to 'presence'`), false);
          }
        },
        fail: (error) => {
          // Gone with the connection: the next resubscribe reads them again.
          if (this.#byRoom.get(subscription.room) !== subscription || isConnectionLoss(error)) return;
          subscription.handleMembers(undefined);
          subscription.handleError(error, false);
        },
      },
      false,
    );
  }

  #failed(subscription: Subscription, error: Error): void {
    if (this.#byRoom.get(subscription.room) !== subscription) return;
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
        if (this.#byRoom.get(subscription.room) === subscription) this.#send(subscription);
      });
      retry.attempt += 1;
      return;
    }
    this.#byRoom.delete(subscription.room);
    this.#cancelRetry(subscription);
    subscription.handleError(error, true);
    if (error instanceof CrierClientError && error.code === "timeout") {
      // The server may still apply the subscribe we gave up on; do not leave it there.
      this.#requests.command(
        { op: "unsubscribe", room: subscription.room },
        { reply: () => {}, fail: () => {} },
        false,
      );
    }
  }

  async #unsubscribe(subscription: Subscription): Promise<void> {
    if (this.#byRoom.get(subscription.room) !== subscription) return;
    this.#byRoom.delete(subscription.room);
    this.#cancelRetry(subscription);
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

  #cancelRetry(subscription: Subscription): void {
    this.#retries.get(subscription)?.timer?.cancel();
    this.#retries.delete(subscription);
  }
}
