// crier-client: the SDK for crier servers, for browsers and Node. This file is the
// package's only public door; everything else is internal and free to change.

export type {
  DirectPush,
  ErrorCode,
  HistoryMessage,
  JoinPush,
  JsonObject,
  JsonValue,
  LeavePush,
  Member,
  MessagePush,
  StreamPosition,
} from "crier-protocol";
// The server's errors reject with ProtocolError; re-exported so apps need not depend on crier-protocol.
export { CloseCode, ProtocolError } from "crier-protocol";
export type { Jitter } from "./backoff.js";
export type {
  ClientEvents,
  ClientState,
  ConnectedInfo,
  DisconnectedInfo,
  HistoryOptions,
  HistoryResult,
  PresenceStats,
  PublishResult,
} from "./client.js";
export { CrierClient } from "./client.js";
export type { Codec } from "./codec.js";
export { jsonCodec } from "./codec.js";
export type { Listener } from "./emitter.js";
export type { ClientErrorCode } from "./errors.js";
export { CrierClientError } from "./errors.js";
export type { ClientOptions, TokenSource } from "./options.js";
export type { WebSocketConstructor, WebSocketLike } from "./socket.js";
export type {
  MessageHandler,
  SubscribedInfo,
  SubscribeOptions,
  Subscription,
  SubscriptionEvents,
  SubscriptionState,
} from "./subscription.js";
