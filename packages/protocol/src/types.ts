// The frames of docs/protocol.md v1 as discriminated unions on `op`.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** A position in a room's history: the offset of the last message seen and the epoch it belongs to. */
export interface StreamPosition {
  offset: number;
  epoch: string;
}

interface WithId {
  /** Positive integer chosen by the client; a command with an id gets exactly one reply with it. */
  id?: number;
}

export interface ConnectCommand extends WithId {
  op: "connect";
  token?: string;
  info?: JsonObject;
  name?: string;
  /**
   * Where to resume the server-side subscriptions of an earlier connection, by
   * room: each one the server makes again starts after that position, as a
   * `subscribe` with `since` would. An addition to docs/protocol.md v1.
   */
  subs?: Record<string, StreamPosition>;
}
export interface SubscribeCommand extends WithId {
  op: "subscribe";
  room: string;
  since?: StreamPosition;
}
export interface UnsubscribeCommand extends WithId {
  op: "unsubscribe";
  room: string;
}
export interface PublishCommand extends WithId {
  op: "publish";
  room: string;
  data: JsonValue;
}
export interface SendCommand extends WithId {
  op: "send";
  user: string;
  data: JsonValue;
}
export interface PresenceCommand extends WithId {
  op: "presence";
  room: string;
}
/** Counts of a room's presence without its members; an addition to protocol v1 (docs/protocol.md). */
export interface PresenceStatsCommand extends WithId {
  op: "presence_stats";
  room: string;
}
export interface HistoryCommand extends WithId {
  op: "history";
  room: string;
  since?: StreamPosition;
  limit?: number;
}
export interface RefreshCommand extends WithId {
  op: "refresh";
  token: string;
}
export interface PongCommand extends WithId {
  op: "pong";
}
/** A call to the application's backend through the server's `rpc` proxy. */
export interface RpcCommand extends WithId {
  op: "rpc";
  method: string;
  data: JsonValue;
}

export type ClientCommand =
  | ConnectCommand
  | SubscribeCommand
  | UnsubscribeCommand
  | PublishCommand
  | SendCommand
  | PresenceCommand
  | PresenceStatsCommand
  | HistoryCommand
  | RefreshCommand
  | PongCommand
  | RpcCommand;

export type ClientOp = ClientCommand["op"];

export interface Member {
  user: string;
  client: string;
  info?: JsonObject;
}

export interface ConnectedReply {
  op: "connected";
  id?: number;
  client: string;
  user: string;
  node: string;
  ping: number;
  /** Over the HTTP fallback only: the session its `/emulation` POSTs name. */
  session?: string;
  /** The rooms the server subscribes this connection to (server-side subscriptions), each answered by a `subscribed` push. */
  subs?: string[];
}
export interface SubscribedReply {
  op: "subscribed";
  id?: number;
  room: string;
  offset?: number;
  epoch?: string;
  recovered: boolean;
}
export interface OkReply {
  op: "ok";
  id?: number;
  offset?: number;
  epoch?: string;
}
export interface PresenceReply {
  op: "presence";
  id?: number;
  room: string;
  members: Member[];
}
export interface PresenceStatsReply {
  op: "presence_stats";
  id?: number;
  room: string;
  /** Connections in the room. */
  clients: number;
  /** Distinct users among them. */
  users: number;
}
export interface HistoryMessage {
  room: string;
  data: JsonValue;
  offset: number;
  from?: string;
}
export interface HistoryReply {
  op: "history";
  id?: number;
  room: string;
  offset: number;
  epoch: string;
  messages: HistoryMessage[];
}
/** The backend's answer to an `rpc`. */
export interface RpcReply {
  op: "rpc";
  id?: number;
  data: JsonValue;
}
export interface MessagePush {
  op: "message";
  room: string;
  data: JsonValue;
  offset?: number;
  from?: string;
}
export interface DirectPush {
  op: "direct";
  data: JsonValue;
  from?: string;
}
export interface JoinPush {
  op: "join";
  room: string;
  member: Member;
}
export interface LeavePush {
  op: "leave";
  room: string;
  member: Member;
}
/** The server ended a subscription (HTTP `/api/unsubscribe`); an addition to docs/protocol.md v1. */
export interface UnsubscribedPush {
  op: "unsubscribed";
  room: string;
}
export interface PingPush {
  op: "ping";
}
export interface ErrorReply {
  op: "error";
  id?: number;
  code: import("./codes.js").ErrorCode;
  message: string;
  /** On the `error` push (without id) of a server-side subscription that failed: its room. */
  room?: string;
}

export type ServerFrame =
  | ConnectedReply
  | SubscribedReply
  | OkReply
  | PresenceReply
  | PresenceStatsReply
  | HistoryReply
  | RpcReply
  | MessagePush
  | DirectPush
  | JoinPush
  | LeavePush
  | UnsubscribedPush
  | PingPush
  | ErrorReply;

/** The frames that answer a command (they may carry its id). */
export type ReplyFrame = Extract<
  ServerFrame,
  { op: "connected" | "subscribed" | "ok" | "presence" | "presence_stats" | "history" | "rpc" | "error" }
>;
