// Cluster membership (ARCHITECTURE.md "Cluster membership"): every instance heartbeats
// what it is and how loaded it is; any instance can list the live ones.

import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { parseJsonObject } from "../json-object.js";

/** An id for an instance started without `nodeId`: its host name and a random suffix. */
export function newNodeId(): string {
  const host = hostname()
    .replace(/[^A-Za-z0-9_.:-]/g, "-")
    .slice(0, 40);
  return `${host}-${randomBytes(3).toString("hex")}`;
}

export interface NodeInfo {
  /** The instance's id (the `node` of `connected` and of envelopes). */
  id: string;
  /** Where the instance can be reached, e.g. "10.0.0.5:8080". */
  address: string;
  /** Open client connections. */
  connections: number;
  /** Rooms with at least one local member. */
  rooms: number;
  /** Epoch milliseconds when the instance started. */
  startedAt: number;
  /** Epoch milliseconds of the heartbeat that wrote this entry (set by the membership). */
  updatedAt: number;
  /** crier version the instance runs, when known. */
  version?: string;
  /** Load the instance reports, e.g. event-loop utilization in [0, 1]. */
  load?: number;
}

export interface Membership {
  /**
   * Announces this instance and keeps announcing it. `info` is called on every
   * heartbeat, so counts stay current; its `updatedAt` is replaced by the heartbeat time.
   */
  start(info: () => NodeInfo): Promise<void>;
  /** The live instances, this one included while started, ordered by id. */
  nodes(): Promise<NodeInfo[]>;
  /**
   * Calls `listener` when a heartbeat finds this instance's entry gone (it
   * expired while the instance was stalled or cut off, or Redis restarted
   * empty) and writes it again: whatever other instances judged by this
   * entry's liveness (presence) may have been pruned meanwhile and must be
   * written again.
   */
  onRejoin(listener: () => void): void;
  /** Stops heartbeating and withdraws this instance at once. Idempotent. */
  close(): Promise<void>;
}

/** Parses a stored entry; undefined when it is not a NodeInfo (a foreign or corrupt value). */
export function parseNodeInfo(text: string): NodeInfo | undefined {
  const v = parseJsonObject(text);
  if (v === undefined) return undefined;
  if (
    typeof v.id !== "string" ||
    typeof v.address !== "string" ||
    typeof v.connections !== "number" ||
    typeof v.rooms !== "number" ||
    typeof v.startedAt !== "number" ||
    typeof v.updatedAt !== "number"
  ) {
    return undefined;
  }
  const info: NodeInfo = {
    id: v.id,
    address: v.address,
    connections: v.connections,
    rooms: v.rooms,
    startedAt: v.startedAt,
    updatedAt: v.updatedAt,
  };
  if (typeof v.version === "string") info.version = v.version;
  if (typeof v.load === "number") info.load = v.load;
  return info;
}
