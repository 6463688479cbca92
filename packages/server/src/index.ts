// crier: the server as a library. Everything not exported here is internal.

export { CloseCode, ProtocolError } from "crier-protocol";
export type { Identity } from "./auth/identity.js";
export type { RoomAction } from "./auth/policy.js";
export type { Broker } from "./broker/broker.js";
export { MemoryBroker } from "./broker/memory.js";
export { RedisBroker } from "./broker/redis.js";
export { ConfigError, loadConfig, validateConfig } from "./config/load.js";
export type { CrierConfig, CrierConfigInput, NamespaceConfig } from "./config/schema.js";
export { type CrierHooks, CrierNode, type CrierOptions } from "./node.js";
export { CrierPublisher, type PublisherOptions } from "./publisher.js";
export type { PublishResult } from "./service/room-service.js";
export type { SessionView } from "./session/host.js";
