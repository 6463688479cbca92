// Prometheus metrics (GET /metrics), read from the parts' own running totals
// at scrape time, so the hot path never touches prom-client.

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { BrokerStats } from "./broker/broker.js";
import type { Hub } from "./hub/hub.js";

export interface MetricSources {
  connections(): number;
  hub: Hub;
  broker(): BrokerStats;
  brokerChannels(): number;
  ready(): boolean;
  /** Connections closed so far, by close code. */
  closes(): ReadonlyMap<number, number>;
  /** Connections, subscriptions and HTTP requests refused by a limit or a policy, by reason. */
  refusals(): ReadonlyMap<string, number>;
  /** permessage-deflate's running totals, when delivery.compression is enabled (hub/ws-deflate.ts). */
  compression?: { readonly frames: number; readonly bytesIn: number; readonly bytesOut: number } | undefined;
}

/** A counter that mirrors an external running total: on each scrape it adds what the total grew by. */
function mirror(registry: Registry, name: string, help: string, read: () => number): void {
  let seen = 0;
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const now = read();
      if (now > seen) this.inc(now - seen);
      seen = now;
    },
  });
}

/** Like mirror(), for running totals kept per label value. */
function mirrorByLabel<K extends string | number>(
  registry: Registry,
  name: string,
  help: string,
  label: string,
  read: () => ReadonlyMap<K, number>,
): void {
  const seen = new Map<K, number>();
  new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      for (const [key, count] of read()) {
        const before = seen.get(key) ?? 0;
        if (count > before) this.inc({ [label]: String(key) }, count - before);
        seen.set(key, count);
      }
    },
  });
}

export function createMetrics(sources: MetricSources, labels: Record<string, string>): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  // prom-client's process_* and nodejs_* metrics, as crier_process_cpu_seconds_total, crier_nodejs_heap_size_used_bytes, …
  collectDefaultMetrics({ register: registry, prefix: "crier_" });
  const gauge = (name: string, help: string, read: () => number): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  };
  gauge("crier_connections", "Open client connections on this instance.", () => sources.connections());
  gauge("crier_rooms", "Rooms with at least one member on this instance.", () => sources.hub.stats().rooms);
  gauge("crier_users", "Users with at least one connection on this instance.", () => sources.hub.stats().users);
  gauge("crier_broker_channels", "Backplane channels this instance is subscribed to.", () => sources.brokerChannels());
  gauge("crier_ready", "1 when the instance is ready (backplane reachable), else 0.", () => (sources.ready() ? 1 : 0));
  const counters = sources.hub.counters;
  mirror(
    registry,
    "crier_publications_total",
    "Room publications fanned out on this instance.",
    () => counters.publications,
  );
  mirror(
    registry,
    "crier_deliveries_total",
    "Room messages delivered to local connections.",
    () => counters.deliveries,
  );
  mirror(registry, "crier_directs_total", "Direct messages delivered to local connections.", () => counters.directs);
  mirror(registry, "crier_repaired_total", "Messages replayed from history to repair a gap.", () => counters.repairs);
  mirror(registry, "crier_rooms_lost_total", "Times a room's members were closed with 4504.", () => counters.lost);
  mirror(
    registry,
    "crier_broker_published_total",
    "Envelopes the backplane acknowledged.",
    () => sources.broker().published,
  );
  mirror(
    registry,
    "crier_broker_publish_failed_total",
    "Publishes the backplane refused.",
    () => sources.broker().publishFailed,
  );
  mirror(
    registry,
    "crier_broker_received_total",
    "Envelopes received from the backplane.",
    () => sources.broker().received,
  );
  mirror(
    registry,
    "crier_broker_recoveries_total",
    "Times the backplane came back after an outage.",
    () => sources.broker().recoveries,
  );
  mirrorByLabel(registry, "crier_disconnects_total", "Client connections closed, by close code.", "code", () =>
    sources.closes(),
  );
  mirrorByLabel(
    registry,
    "crier_refused_total",
    "Connections, subscriptions and HTTP requests (API, fallback) refused by a limit or a policy, by reason (docs/security.md).",
    "reason",
    () => sources.refusals(),
  );
  const compression = sources.compression;
  if (compression !== undefined) {
    mirror(
      registry,
      "crier_compressed_frames_total",
      "Frames compressed with permessage-deflate (a publication once, however many sockets it reaches).",
      () => compression.frames,
    );
    mirror(
      registry,
      "crier_compression_input_bytes_total",
      "Payload bytes before compression, of the frames compressed.",
      () => compression.bytesIn,
    );
    mirror(
      registry,
      "crier_compression_output_bytes_total",
      "Payload bytes after compression, of the frames compressed.",
      () => compression.bytesOut,
    );
  }
  return registry;
}

/** Calls to the backend proxy: counted by proxy and outcome, timed by proxy (not a hot path: direct). */
export function proxyMetrics(registry: Registry): (proxy: string, outcome: string, seconds: number) => void {
  const calls = new Counter({
    name: "crier_proxy_calls_total",
    help: "Calls to the application's backend proxy, by proxy and outcome (result, error, disconnect, or a failure: timeout, status, invalid, unreachable).",
    labelNames: ["proxy", "outcome"],
    registers: [registry],
  });
  const duration = new Histogram({
    name: "crier_proxy_duration_seconds",
    help: "Time of calls to the application's backend proxy, waiting for a free slot included.",
    labelNames: ["proxy"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  return (proxy, outcome, seconds) => {
    calls.inc({ proxy, outcome });
    duration.observe({ proxy }, seconds);
  };
}
