// Messages between the orchestrator and the worker threads. Every request
// carries a sequence number and gets exactly one reply with the same one.

export type WorkerRequest =
  /** Publish at `rate` publications/s (0: stop), payloads tagged `tag`. */
  | { type: "rate"; rate: number; tag: string }
  /** Opens a measurement window: counters reset, publications tagged `tag` from now on. */
  | { type: "begin"; tag: string }
  /** Closes the window: publishing stops. */
  | { type: "end" }
  /** Deliveries of the current window's tag so far (while draining). */
  | { type: "progress" }
  /** Everything measured for the window. */
  | { type: "collect" }
  /** Closes every connection; the worker exits after replying. */
  | { type: "close" };

export interface ReadyReply {
  type: "ready";
  connected: number;
  failed: number;
  firstError?: string;
}

export interface EndReply {
  type: "end";
  /** Publications written during the window. */
  sent: number;
  /** Deliveries those publications must make. */
  expected: number;
  /** Payloads of any tag received during the window (the throughput the servers sustained). */
  windowDeliveries: number;
  /** Publications the scheduler skipped because the thread fell more than a second behind. */
  skipped: number;
  /** Publications due that could not go out (connection gone, too many HTTP requests pending). */
  unsent: number;
}

export interface ProgressReply {
  type: "progress";
  delivered: number;
}

export interface CollectReply {
  type: "collect";
  /** Payloads of the window's tag received (during the window and the drain). */
  delivered: number;
  /** Latency histogram (µs), hdr-histogram-js compressed base64. */
  histogram: string;
  errors: number;
  errorSamples: string[];
  /** Connections closed by the server, by close code. */
  closes: Record<string, number>;
}

export type WorkerReply =
  | ReadyReply
  | EndReply
  | ProgressReply
  | CollectReply
  | { type: "ok" }
  | { type: "fatal"; message: string };

export interface Envelope<T> {
  seq: number;
  body: T;
}
