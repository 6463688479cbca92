// The shapes of the HTTP API's replies that the console reads (docs/protocol.md,
// "HTTP API"), taken from the server's own types (type-only: nothing of the
// server reaches the page).

import type { NodeInfo } from "../../server/src/cluster/membership.js";
import type { ConsoleViews } from "../../server/src/console/views.js";

export type { Sample } from "../../server/src/console/sampler.js";
export type { ConnectionView as Connection, Missing } from "../../server/src/console/views.js";
export type { NodeInfo };

type Reply<K extends keyof ConsoleViews> = ConsoleViews[K] extends (...args: never[]) => Promise<infer T> ? T : never;

export interface Info {
  node: string;
  nodes: NodeInfo[];
}
export type Stats = Reply<"stats">;
export type Rooms = Reply<"rooms">;
export type Subscribers = Reply<"subscribers">;
export type Connections = Reply<"connections">;
export type Warnings = Reply<"warnings">;

export interface History {
  messages: { offset: number; data: unknown; from?: string }[];
}

export interface Presence {
  members: { user: string; client: string }[];
}
