// The console's part of an instance: the per-second samples, the warning log,
// and the answers this instance gives about itself to the cluster-wide views
// (GET /api/stats, /api/rooms, /api/subscribers, /api/connections,
// /api/warnings). The node feeds it events and owns its lifetime.

import type { BrokerStats } from "../broker/broker.js";
import type { Control } from "../cluster/control.js";
import type { Hub } from "../hub/hub.js";
import type { SessionView } from "../session/host.js";
import { StatsSampler } from "./sampler.js";
import { type ConnectionView, type ConsoleMethods, ConsoleViews } from "./views.js";
import { type WarningKind, WarningLog } from "./warnings.js";

/** One sample a second, five minutes of them: what the charts show. */
const SAMPLE_MS = 1000;
const SAMPLES_KEPT = 300;
/** Warnings kept per instance for "recent warnings". */
const WARNINGS_KEPT = 20;

export interface ConsoleSources {
  hub: Hub;
  sessions: () => Iterable<SessionView>;
  connections: () => number;
  broker: () => BrokerStats;
  ready: () => boolean;
  features: (room: string) => { history: boolean; presence: boolean };
  /** Ids of the live instances, this one included. */
  nodes: () => Promise<string[]>;
}

export class NodeConsole {
  readonly views: ConsoleViews;
  private readonly warningLog = new WarningLog(WARNINGS_KEPT);
  private readonly sampler: StatsSampler;

  constructor(control: Control<ConsoleMethods>, sources: ConsoleSources) {
    const { hub } = sources;
    this.sampler = new StatsSampler(
      () => ({
        connections: sources.connections(),
        messagesOut: hub.counters.publications,
        deliveries: hub.counters.deliveries + hub.counters.directs,
        ready: sources.ready(),
        reconnects: sources.broker().recoveries,
        slowConsumers: this.warningLog.count("slow_consumer"),
        rateLimited: this.warningLog.count("rate_limited"),
      }),
      { intervalMs: SAMPLE_MS, capacity: SAMPLES_KEPT, onTick: () => hub.advanceTick() },
    );
    this.views = new ConsoleViews(control, sources.nodes, {
      ready: sources.ready,
      features: sources.features,
      samples: (since) => this.sampler.samples(since),
      rooms: (search, limit) => hub.roomLoads(search, limit),
      subscribers: (room, limit) => hub.subscribers(room, limit),
      connections: (user) => {
        const out: Omit<ConnectionView, "node">[] = [];
        // Every session is walked: for the console, on request only.
        for (const session of sources.sessions()) {
          if (session.user !== user || session.closeCode !== undefined) continue;
          out.push({
            client: session.id,
            user: session.user,
            transport: session.transport,
            address: session.address,
            connectedAt: session.connectedAt,
            rooms: [...session.rooms],
          });
        }
        return out;
      },
      warnings: () => ({ totals: this.warningLog.totals(), recent: this.warningLog.recent() }),
    });
  }

  start(): void {
    this.sampler.start();
  }

  /** A publication this instance accepted, and how long append + publish took. */
  published(ms: number): void {
    this.sampler.published(ms);
  }

  warn(kind: WarningKind, detail: string): void {
    this.warningLog.add(kind, detail);
  }

  close(): void {
    this.sampler.stop();
  }
}
