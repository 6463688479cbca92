// What a backend or a client can do to rooms and users, cluster-wide: publish
// (with an offset where the room keeps history), send to a user, disconnect
// and unsubscribe. Shared by the node (sessions, HTTP API, library API) and
// the standalone CrierPublisher, so a publication is built and numbered the
// same way wherever it comes from.

import { isValidRoom, ProtocolError, type StreamPosition } from "crier-protocol";
import type { RoomPolicy } from "../auth/policy.js";
import type { Broker, ChannelNames } from "../broker/broker.js";
import type { Envelope } from "../broker/envelope.js";
import type { HistoryOptions } from "../history/history.js";

export interface PublishResult {
  offset?: number;
  epoch?: string;
}

export type DisconnectTarget = { user: string } | { client: string };

export class RoomService {
  readonly names: ChannelNames;
  private readonly broker: Broker;
  private readonly policy: RoomPolicy;
  /** Shown as the publishing node in envelopes. */
  private readonly nodeId: string;
  /** Told how long each accepted publication took (the console's publish latency). */
  private readonly published: ((ms: number) => void) | undefined;

  constructor(
    broker: Broker,
    names: ChannelNames,
    policy: RoomPolicy,
    nodeId: string,
    published?: (ms: number) => void,
  ) {
    this.broker = broker;
    this.names = names;
    this.policy = policy;
    this.nodeId = nodeId;
    this.published = published;
  }

  /** How much of `room` is kept, or undefined when its namespace keeps no history. */
  historyOptions(room: string): HistoryOptions | undefined {
    const history = this.policy.options(room).history;
    return history === undefined ? undefined : history;
  }

  /**
   * Publishes `dataJson` (JSON text, forwarded unparsed) to `room` as `from`
   * ("" for the backend). Rooms with history get their offset from the
   * engine's append; rejects with `unavailable` when the backplane is down.
   */
  async publish(room: string, dataJson: string, from = ""): Promise<PublishResult> {
    if (!isValidRoom(room)) throw new ProtocolError("bad_request", `invalid room name '${room}'`);
    const envelope: Envelope = { kind: "message", room, node: this.nodeId, data: dataJson };
    if (from !== "") envelope.from = from;
    const channel = this.names.room(room);
    const history = this.historyOptions(room);
    const started = performance.now();
    let result: PublishResult = {};
    if (history === undefined) {
      await this.broker.publish(channel, envelope);
    } else {
      const position: StreamPosition = await this.append(channel, envelope, { room, ...history });
      result = { offset: position.offset, epoch: position.epoch };
    }
    this.published?.(performance.now() - started);
    return result;
  }

  /** Sends `dataJson` to every connection of `user`, on every instance. */
  async send(user: string, dataJson: string, from = ""): Promise<void> {
    if (user === "") throw new ProtocolError("bad_request", "user must not be empty");
    const envelope: Envelope = { kind: "direct", user, node: this.nodeId, data: dataJson };
    if (from !== "") envelope.from = from;
    await this.broker.publish(this.names.user(user), envelope);
  }

  /** Closes every connection of a user, or one connection by client id, wherever it is. */
  async disconnect(target: DisconnectTarget, code: number, reason: string): Promise<void> {
    const envelope: Envelope = { kind: "disconnect", node: this.nodeId, code, reason, data: "" };
    if ("user" in target) {
      envelope.user = target.user;
      await this.broker.publish(this.names.user(target.user), envelope);
    } else {
      envelope.client = target.client;
      await this.broker.publish(this.names.control(), envelope);
    }
  }

  /** Ends `user`'s subscriptions to `room` on every instance. */
  async unsubscribe(user: string, room: string): Promise<void> {
    const envelope: Envelope = { kind: "unsubscribe", user, room, node: this.nodeId, data: "" };
    await this.broker.publish(this.names.user(user), envelope);
  }

  private append(
    channel: string,
    envelope: Envelope,
    options: HistoryOptions & { room: string },
  ): Promise<StreamPosition> {
    if (this.broker.append === undefined) {
      // Refused at start (backends.ts); reached only by a broker swapped in later.
      throw new ProtocolError("internal", "this broker keeps no history");
    }
    return this.broker.append(channel, envelope, options);
  }
}
