// The live charts: per-second samples of every instance (GET /api/stats), one
// series per instance and, where a sum means something, one for the cluster.
// Samples are bucketed by whole second so instances line up on one time axis.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { el } from "./dom.js";
import type { Sample, Stats } from "./types.js";

/** Seconds shown: what each instance keeps (packages/server/src/console/console.ts). */
const WINDOW_S = 300;
const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7480", "#57606a"];

type Metric = (sample: Sample) => number | null;

interface ChartSpec {
  id: string;
  title: string;
  unit: string;
  /** One series per instance of this value. */
  perNode: Metric;
  /** How the cluster series combines the instances' values; none when a combination means nothing. */
  cluster?: { label: string; value: Metric; combine: "sum" | "max" }[];
}

/** A chart of one counter: a line per instance and the cluster's sum. */
function summed(id: string, title: string, unit: string, value: Metric): ChartSpec {
  return { id, title, unit, perNode: value, cluster: [{ label: "cluster", value, combine: "sum" }] };
}

const CHARTS: ChartSpec[] = [
  summed("connections", "Connections", "", (s) => s.connections),
  summed("messages-in", "Messages in per second", "/s", (s) => s.messagesIn),
  summed("messages-out", "Messages out per second (fanned out)", "/s", (s) => s.messagesOut),
  summed("deliveries", "Deliveries per second", "/s", (s) => s.deliveries),
  {
    id: "latency",
    title: "Publish latency (mean; cluster: slowest)",
    unit: " ms",
    perNode: (s) => s.latencyMs,
    cluster: [{ label: "cluster max", value: (s) => s.latencyMaxMs, combine: "max" }],
  },
  {
    id: "backplane",
    title: "Backplane reachable (1) and reconnects",
    unit: "",
    perNode: (s) => s.ready,
    cluster: [{ label: "reconnects", value: (s) => s.reconnects, combine: "sum" }],
  },
  {
    id: "warnings",
    title: "Slow-consumer closes and rate-limit hits",
    unit: "/s",
    perNode: (s) => s.slowConsumers + s.rateLimited,
    cluster: [
      { label: "slow consumers", value: (s) => s.slowConsumers, combine: "sum" },
      { label: "rate limited", value: (s) => s.rateLimited, combine: "sum" },
    ],
  },
];

interface Chart {
  spec: ChartSpec;
  figure: HTMLElement;
  plot: uPlot | undefined;
  /** The instances the plot was made for; a change remakes it. */
  nodes: string;
}

export class Charts {
  private readonly grid: HTMLElement;
  private readonly charts: Chart[];
  /** Per instance: second -> sample. */
  private readonly samples = new Map<string, Map<number, Sample>>();
  private latest = 0;

  constructor(grid: HTMLElement) {
    this.grid = grid;
    this.charts = CHARTS.map((spec) => {
      const figure = el("figure", undefined, { "data-chart": spec.id, "aria-label": spec.title });
      figure.append(el("figcaption", spec.title));
      grid.append(figure);
      return { spec, figure, plot: undefined, nodes: "" };
    });
    new ResizeObserver(() => this.resize()).observe(grid);
  }

  /** Only samples after this (epoch ms) are asked for next time. */
  since(): number {
    return this.latest;
  }

  update(stats: Stats, live: readonly string[]): void {
    for (const { node, samples } of stats.nodes) {
      let bySecond = this.samples.get(node);
      if (bySecond === undefined) {
        bySecond = new Map();
        this.samples.set(node, bySecond);
      }
      for (const sample of samples) {
        bySecond.set(Math.floor(sample.t / 1000), sample);
        if (sample.t > this.latest) this.latest = sample.t;
      }
    }
    const horizon = Math.floor(this.latest / 1000) - WINDOW_S;
    for (const [node, bySecond] of this.samples) {
      for (const second of bySecond.keys()) if (second <= horizon) bySecond.delete(second);
      if (bySecond.size === 0 || !live.includes(node)) this.samples.delete(node);
    }
    const nodes = [...this.samples.keys()].sort();
    // Instances sample on their own clocks: the newest second is shown once every
    // instance that answered has reported it, so the cluster's sum never dips at the edge.
    let edge = Number.POSITIVE_INFINITY;
    for (const { node } of stats.nodes) {
      const seconds = [...(this.samples.get(node)?.keys() ?? [])];
      if (seconds.length > 0) edge = Math.min(edge, Math.max(...seconds));
    }
    const seconds = [...new Set(nodes.flatMap((node) => [...(this.samples.get(node)?.keys() ?? [])]))]
      .filter((second) => second <= edge)
      .sort((a, b) => a - b);
    for (const chart of this.charts) this.draw(chart, nodes, seconds);
  }

  private draw(chart: Chart, nodes: string[], seconds: number[]): void {
    const { spec } = chart;
    const columns: (number | null)[][] = nodes.map((node) => {
      const bySecond = this.samples.get(node);
      return seconds.map((second) => {
        const sample = bySecond?.get(second);
        return sample === undefined ? null : spec.perNode(sample);
      });
    });
    for (const cluster of spec.cluster ?? []) {
      columns.push(
        seconds.map((second) => {
          let total: number | null = null;
          for (const node of nodes) {
            const sample = this.samples.get(node)?.get(second);
            const value = sample === undefined ? null : cluster.value(sample);
            if (value === null) continue;
            total = total === null ? value : cluster.combine === "sum" ? total + value : Math.max(total, value);
          }
          return total;
        }),
      );
    }
    const data: uPlot.AlignedData = [seconds, ...columns];
    const key = nodes.join(" ");
    if (chart.plot === undefined || chart.nodes !== key) {
      chart.plot?.destroy();
      chart.nodes = key;
      chart.plot = new uPlot(this.options(spec, nodes, chart.figure), data, chart.figure);
    } else {
      chart.plot.setData(data);
    }
    // For tests and screen readers: how many points, and the latest value of each series.
    chart.figure.dataset.points = String(seconds.length);
    chart.figure.dataset.series = JSON.stringify(
      Object.fromEntries(
        [...nodes, ...(spec.cluster ?? []).map((c) => c.label)].map((label, i) => [label, columns[i]?.at(-1) ?? null]),
      ),
    );
  }

  private options(spec: ChartSpec, nodes: string[], figure: HTMLElement): uPlot.Options {
    const format = (_u: uPlot, v: number | null): string =>
      v === null ? "–" : `${Math.round(v * 100) / 100}${spec.unit}`;
    const series: uPlot.Series[] = [
      { label: "time", value: (_u, v: number | null) => (v === null ? "–" : new Date(v * 1000).toLocaleTimeString()) },
      ...nodes.map((node, i) => ({
        label: node,
        stroke: COLORS[i % COLORS.length] ?? "#000",
        width: 1.5,
        spanGaps: true,
        value: format,
      })),
      ...(spec.cluster ?? []).map((cluster, i) => ({
        label: cluster.label,
        stroke: i === 0 ? "#24292f" : "#6e7781",
        width: 2,
        dash: [4, 3],
        spanGaps: true,
        value: format,
      })),
    ];
    return {
      width: this.width(figure),
      height: 160,
      series,
      scales: { y: { range: (_u, min, max) => [Math.min(0, min), Math.max(1, max * 1.1)] } },
      axes: [{}, { size: 48 }],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      hooks: {
        // Unless the pointer is over the chart, the legend shows the latest values.
        draw: [
          (plot) => {
            const left = plot.cursor.left ?? -1;
            const last = plot.data[0].length - 1;
            if (left < 0 && last >= 0) plot.setLegend({ idx: last });
          },
        ],
      },
    };
  }

  private width(figure: HTMLElement): number {
    return Math.max(figure.clientWidth - 8, 200);
  }

  private resize(): void {
    for (const chart of this.charts) chart.plot?.setSize({ width: this.width(chart.figure), height: 160 });
  }

  /** Forgets every sample (after signing out). */
  clear(): void {
    this.samples.clear();
    this.latest = 0;
    for (const chart of this.charts) {
      chart.plot?.destroy();
      chart.plot = undefined;
      chart.nodes = "";
    }
    this.grid.dataset.cleared = "1";
  }
}
