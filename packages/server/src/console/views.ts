// The console's cluster-wide views, answered from any instance: each asks
// every live instance (cluster/control.ts) for its local part and merges the
// answers. Instances that do not answer in time are listed in `missing`, so a
// view is never silently partial.

import type { ErrorCode } from "crier-protocol";
import type { Control, ControlAnswer } from "../cluster/control.js";
import { busiestFirst, type RoomLoad } from "../hub/hub.js";
import type { Sample } from "./sampler.js";
import type { Warning, WarningKind } from "./warnings.js";

export interface Subscriber {
  client: string;
  user: string;
}

export interface ConnectionView {
  client: string;
  user: string;
  node: string;
  transport: string;
  address: string;
  /** Epoch milliseconds. */
  connectedAt: number;
  rooms: string[];
}

/** What each instance answers about itself. */
export type ConsoleMethods = {
  "console.stats": { request: { since: number }; reply: { ready: boolean; samples: Sample[] } };
  "console.rooms": { request: { search: string; limit: number }; reply: RoomLoad[] };
  "console.subscribers": { request: { room: string; limit: number }; reply: Subscriber[] };
  "console.connections": { request: { user: string }; reply: Omit<ConnectionView, "node">[] };
  "console.warnings": {
    request: Record<string, never>;
    reply: { totals: Record<WarningKind, number>; recent: Warning[] };
  };
};

/** This instance's local answers. */
export interface LocalViews {
  ready(): boolean;
  /** Whether the room's namespace keeps history and presence (the same on every instance). */
  features(room: string): { history: boolean; presence: boolean };
  samples(since: number): Sample[];
  rooms(search: string, limit: number): RoomLoad[];
  subscribers(room: string, limit: number): Subscriber[];
  connections(user: string): Omit<ConnectionView, "node">[];
  warnings(): { totals: Record<WarningKind, number>; recent: Warning[] };
}

export interface Missing {
  node: string;
  error: { code: ErrorCode; message: string };
}

type Answers<T> = { answers: { node: string; reply: T }[]; missing: Missing[] };

/** Rooms, subscribers per room and connections per user returned at most. */
export const VIEW_LIMIT = 500;

export class ConsoleViews {
  private readonly control: Control<ConsoleMethods>;
  private readonly nodes: () => Promise<string[]>;
  private readonly local: LocalViews;

  constructor(control: Control<ConsoleMethods>, nodes: () => Promise<string[]>, local: LocalViews) {
    this.control = control;
    this.nodes = nodes;
    this.local = local;
    control.handle("console.stats", ({ since }) => ({ ready: local.ready(), samples: local.samples(since) }));
    control.handle("console.rooms", ({ search, limit }) => local.rooms(search, limit));
    control.handle("console.subscribers", ({ room, limit }) => local.subscribers(room, limit));
    control.handle("console.connections", ({ user }) => local.connections(user));
    control.handle("console.warnings", () => local.warnings());
  }

  async stats(
    since: number,
  ): Promise<{ nodes: { node: string; ready: boolean; samples: Sample[] }[]; missing: Missing[] }> {
    const { answers, missing } = await this.askAll("console.stats", { since });
    return { nodes: answers.map(({ node, reply }) => ({ node, ...reply })), missing };
  }

  /** The busiest rooms cluster-wide whose name contains `search`: by members, then messages per second. */
  async rooms(search: string, limit: number): Promise<{ rooms: RoomLoad[]; missing: Missing[] }> {
    const { answers, missing } = await this.askAll("console.rooms", { search, limit });
    const merged = new Map<string, RoomLoad>();
    for (const { reply } of answers) {
      for (const load of reply) {
        const seen = merged.get(load.room);
        if (seen === undefined) merged.set(load.room, { ...load });
        else {
          seen.members += load.members;
          // Every instance with members fans out each publication: the room's rate is the highest seen, not the sum.
          seen.messagesPerSecond = Math.max(seen.messagesPerSecond, load.messagesPerSecond);
        }
      }
    }
    return { rooms: [...merged.values()].sort(busiestFirst).slice(0, limit), missing };
  }

  /** A room's subscribed connections on every instance, and whether it keeps history and presence. */
  async subscribers(room: string): Promise<{
    room: string;
    history: boolean;
    presence: boolean;
    subscribers: (Subscriber & { node: string })[];
    missing: Missing[];
  }> {
    const { answers, missing } = await this.askAll("console.subscribers", { room, limit: VIEW_LIMIT });
    const subscribers = answers.flatMap(({ node, reply }) => reply.map((entry) => ({ ...entry, node })));
    return { room, ...this.local.features(room), subscribers: subscribers.slice(0, VIEW_LIMIT), missing };
  }

  async connections(user: string): Promise<{ connections: ConnectionView[]; missing: Missing[] }> {
    const { answers, missing } = await this.askAll("console.connections", { user });
    const connections = answers.flatMap(({ node, reply }) => reply.map((entry) => ({ ...entry, node })));
    connections.sort((a, b) => a.connectedAt - b.connectedAt);
    return { connections: connections.slice(0, VIEW_LIMIT), missing };
  }

  /** Counts by kind summed over the cluster, and the latest warnings of every instance, newest first. */
  async warnings(): Promise<{
    totals: Record<string, number>;
    recent: (Warning & { node: string })[];
    missing: Missing[];
  }> {
    const { answers, missing } = await this.askAll("console.warnings", {});
    const totals: Record<string, number> = {};
    for (const { reply } of answers) {
      for (const [kind, count] of Object.entries(reply.totals)) totals[kind] = (totals[kind] ?? 0) + count;
    }
    const recent = answers
      .flatMap(({ node, reply }) => reply.recent.map((warning) => ({ ...warning, node })))
      .sort((a, b) => b.at - a.at)
      .slice(0, 50);
    return { totals, recent, missing };
  }

  private async askAll<K extends keyof ConsoleMethods & string>(
    method: K,
    request: ConsoleMethods[K]["request"],
  ): Promise<Answers<ConsoleMethods[K]["reply"]>> {
    const answers = await this.control.askAll(await this.nodes(), method, request);
    return split(answers);
  }
}

function split<T>(answers: ControlAnswer<T>[]): Answers<T> {
  const out: Answers<T> = { answers: [], missing: [] };
  for (const answer of answers) {
    if ("reply" in answer) out.answers.push(answer);
    else out.missing.push(answer);
  }
  return out;
}
