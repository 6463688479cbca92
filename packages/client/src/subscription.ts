// One room subscription as the application holds it: its message listeners, its
// `ready` promise, the last position seen in the room, which the client sends as
// `since` when it resubscribes after a reconnect so the server replays what was
// missed, and, when asked for, the room's member list.

import type { JoinPush, LeavePush, Member, MessagePush, StreamPosition, SubscribedReply } from "crier-protocol";
import { type Deferred, deferred } from "./deferred.js";
import { Emitter } from "./emitter.js";
import { CrierClientError } from "./errors.js";
import { MemberList } from "./members.js";

export interface SubscribeOptions {
  /** Resume after this position (e.g. one saved by the app); the server replays what came after it. */
  since?: StreamPosition;
  /**
   * Keep `subscription.members`: read with `presence` after each (re)subscribe, then kept
   * current with `join` and `leave` (the room's namespace needs presence and joinLeave).
   */
  members?: boolean;
}

/** The server's `subscribed` reply. `recovered: false` after a resubscribe means messages may have been missed: reload state. */
export interface SubscribedInfo {
  room: string;
  offset?: number;
  epoch?: string;
  recovered: boolean;
}

export type MessageHandler = (message: MessagePush) => void;

export interface SubscriptionEvents {
  /** Every `message` push for the room (the handler given to subscribe() is the first listener). */
  message: MessagePush;
  /** The subscription was restored after a reconnect; check `recovered`. */
  resubscribed: SubscribedInfo;
  /** A resubscribe after a reconnect failed, or reading the members did; see `state` for whether the client still retries. */
  error: Error;
  /** The member list changed: read anew after a (re)subscribe, or a member joined or left. */
  members: ReadonlyMap<string, Member>;
  /**
   * The server ended the subscription (`POST /api/unsubscribe`), or, for a server-side
   * one, a new connection no longer has it. Not emitted for unsubscribe() or close().
   */
  unsubscribed: { room: string };
}

/** subscribing: waiting for the server (first time or after a reconnect); active: confirmed; failed: the server refused it; unsubscribed: ended by the app or close(). */
export type SubscriptionState = "subscribing" | "active" | "failed" | "unsubscribed";

export class Subscription extends Emitter<SubscriptionEvents> {
  readonly room: string;
  /**
   * Made by the server (a JWT `subs` claim, the connect proxy's `rooms`) rather than by
   * subscribe(): announced by the client's `subscription` event and made again by the
   * server on each connection (docs/protocol.md "Server-side subscriptions, decided").
   */
  readonly serverSide: boolean;
  /** Resolves with the first `subscribed` reply; rejects if the server refuses the subscription or it ends first. */
  readonly ready: Promise<SubscribedInfo>;
  readonly #ready: Deferred<SubscribedInfo>;
  readonly #detach: (subscription: Subscription) => Promise<void>;
  #state: SubscriptionState = "subscribing";
  #confirmed = false;
  #position: StreamPosition | undefined;
  readonly #members: MemberList | undefined;

  constructor(
    room: string,
    handler: MessageHandler | undefined,
    options: SubscribeOptions,
    detach: (subscription: Subscription) => Promise<void>,
    serverSide = false,
  ) {
    super();
    this.room = room;
    this.serverSide = serverSide;
    this.#detach = detach;
    const since = options.since;
    this.#position = since && { offset: since.offset, epoch: since.epoch };
    this.#members = options.members === true ? new MemberList() : undefined;
    this.#ready = deferred();
    this.ready = this.#ready.promise;
    // An app that never awaits `ready` must not get an unhandled rejection when the
    // subscription fails; one that awaits it still sees the rejection.
    this.ready.catch(() => {});
    if (handler) this.on("message", handler);
  }

  get state(): SubscriptionState {
    return this.#state;
  }

  /** Whether the server confirmed this subscription at least once (`ready` resolved). */
  get confirmed(): boolean {
    return this.#confirmed;
  }

  /** The last position seen (offset and epoch), sent as `since` on resubscribe; undefined for rooms without history. */
  get position(): StreamPosition | undefined {
    return this.#position === undefined ? undefined : { ...this.#position };
  }

  /**
   * The room's members keyed by client id (this client included), with `members: true`;
   * an empty map otherwise. Replaced as a whole once read after each (re)subscribe.
   */
  get members(): ReadonlyMap<string, Member> {
    return this.#members?.members ?? NO_MEMBERS;
  }

  /** Whether the subscription keeps its member list (subscribe's `members` option). */
  get tracksMembers(): boolean {
    return this.#members !== undefined;
  }

  /** Stops delivery at once and tells the server. Resolves when the server confirmed (or had already forgotten). */
  unsubscribe(): Promise<void> {
    return this.#detach(this);
  }

  // The methods below are driven by the client, not by applications.

  /** @internal Applies a `subscribed` reply to the `subscribe` sent with `since`. */
  handleSubscribed(reply: SubscribedReply, since: StreamPosition | undefined): void {
    this.#position = positionAfter(reply, since);
    const { op, id, ...info } = reply;
    this.#state = "active";
    if (this.#confirmed) {
      this.emit("resubscribed", info);
    } else {
      this.#confirmed = true;
      this.#ready.resolve(info);
    }
  }

  /** @internal The connection dropped: the client resubscribes on the next one, and reads the members again. */
  handleConnectionLost(): void {
    if (this.#state === "active") this.#state = "subscribing";
    this.#members?.reset();
  }

  /** @internal A `join` or `leave` in the room. */
  handleMemberPush(frame: JoinPush | LeavePush): void {
    if (this.#members?.push(frame)) this.emit("members", this.#members.members);
  }

  /** @internal The `presence` answer read after a (re)subscribe; undefined when the read was refused. */
  handleMembers(members: readonly Member[] | undefined): void {
    const list = this.#members;
    if (list === undefined) return;
    if (members === undefined) list.unread();
    else list.loaded(members);
    this.emit("members", list.members);
  }

  /** @internal */
  handleMessage(message: MessagePush): void {
    if (typeof message.offset === "number" && this.#position !== undefined) {
      this.#position = { offset: message.offset, epoch: this.#position.epoch };
    }
    this.emit("message", message);
  }

  /** @internal The subscription was refused (before it was confirmed: `ready` rejects) or a resubscribe failed. */
  handleError(error: Error, final: boolean): void {
    if (final) this.#state = "failed";
    if (this.#confirmed) this.emit("error", error);
    else if (final) this.#ready.reject(error);
  }

  /** @internal Ended by unsubscribe() or close(), or by the server (`byServer`: the `unsubscribed` event). */
  end(error?: Error, byServer = false): void {
    if (this.#state === "unsubscribed") return;
    this.#state = "unsubscribed";
    if (!this.#confirmed)
      this.#ready.reject(error ?? new CrierClientError("unsubscribed", `unsubscribed from '${this.room}'`));
    if (byServer) this.emit("unsubscribed", { room: this.room });
  }
}

const NO_MEMBERS: ReadonlyMap<string, Member> = new Map();

/**
 * The position to resume from after a `subscribed` reply. When the server recovered
 * from our `since`, the missed messages follow the reply and advance the position one
 * by one; taking the reply's offset instead would skip them if the connection dropped
 * half way through the replay. Otherwise the reply states the room's current position.
 */
export function positionAfter(reply: SubscribedReply, since: StreamPosition | undefined): StreamPosition | undefined {
  if (reply.recovered === true && since !== undefined && reply.epoch === since.epoch) return { ...since };
  if (typeof reply.offset === "number" && typeof reply.epoch === "string") {
    return { offset: reply.offset, epoch: reply.epoch };
  }
  return undefined;
}
