// The HTTP fallback (docs/protocol.md "HTTP fallback transport") behind the
// WebSocket API the client already speaks (socket.ts), so connection.ts and
// client.ts drive it like any WebSocket: the first frame sent (`connect`)
// opens GET /sse with it in the URL; the server's events arrive as messages;
// later frames are POSTed to /emulation with the session from `connected`,
// one POST at a time (their order is the commands' order), the frames of one
// tick together; the server's final `close` event is the close.

import { SUBPROTOCOL_JSON } from "crier-protocol";
import type { CloseEventLike, ErrorEventLike, MessageEventLike, WebSocketLike } from "./socket.js";
import { readEventStream } from "./sse-reader.js";

type Handler<E> = { bivarianceHack(event: E): void }["bivarianceHack"];

interface EventSourceLike {
  onmessage: ((event: { data: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  close(): void;
}
type EventSourceConstructor = new (url: string, init?: { withCredentials?: boolean }) => EventSourceLike;

/** Close code for a stream or POST lost without the server's close event, as for a socket lost without a close frame. */
const LOST = 1006;

export class SseSocket implements WebSocketLike {
  /** The fallback carries JSON only. */
  readonly protocol = SUBPROTOCOL_JSON;
  onopen: Handler<unknown> | null = null;
  onmessage: Handler<MessageEventLike> | null = null;
  onclose: Handler<CloseEventLike> | null = null;
  onerror: Handler<ErrorEventLike> | null = null;
  readonly #url: string;
  readonly #emulation: string;
  #session: string | undefined;
  #outbox: string[] = [];
  #posting = false;
  #stop: (() => void) | undefined;
  #done = false;

  /** `url`: the GET /sse endpoint, or a WebSocket URL (ws:, wss:) to find it beside; /emulation is its sibling. */
  constructor(url: string) {
    this.#url = sseUrl(url);
    this.#emulation = new URL("emulation", this.#url).href;
    // Nothing opens before the connect frame, which travels in the stream's URL.
    void Promise.resolve().then(() => {
      if (!this.#done) this.onopen?.({});
    });
  }

  send(data: string | Uint8Array): void {
    if (typeof data !== "string") throw new TypeError("crier-client/sse carries JSON text frames only");
    if (this.#done) throw new Error("the SSE session has ended");
    if (this.#stop === undefined) {
      this.#open(data);
      return;
    }
    this.#outbox.push(data);
    // Frames sent in the same tick leave in one POST.
    if (this.#outbox.length === 1) void Promise.resolve().then(() => this.#flush());
  }

  /** Ends the stream; the server ends the session as for a dropped connection. No close event. */
  close(): void {
    this.#done = true;
    this.#stop?.();
  }

  #open(connect: string): void {
    const url = `${this.#url}${this.#url.includes("?") ? "&" : "?"}connect=${encodeURIComponent(connect)}`;
    const EventSource = (globalThis as unknown as { EventSource?: EventSourceConstructor }).EventSource;
    if (EventSource === undefined) {
      this.#stop = readEventStream(
        url,
        (data) => this.#event(data),
        (reason) => this.#end(LOST, reason),
      );
      return;
    }
    const source = new EventSource(url, { withCredentials: true });
    source.onmessage = (event) => this.#event(event.data);
    // EventSource would reconnect by itself, as a new session: the client reconnects (and recovers) instead.
    source.onerror = () => this.#end(LOST, "the event stream failed");
    this.#stop = () => source.close();
  }

  #event(data: string): void {
    if (this.#done) return;
    // Only `connected` and `close` concern the transport; every other event passes unparsed.
    if (data.startsWith('{"op":"c')) {
      const frame = JSON.parse(data) as { op: string; session?: unknown; code?: unknown; reason?: unknown };
      if (frame.op === "close") {
        this.#end(typeof frame.code === "number" ? frame.code : LOST, String(frame.reason ?? ""));
        return;
      }
      if (frame.op === "connected" && typeof frame.session === "string") {
        this.#session = frame.session;
        void Promise.resolve().then(() => this.#flush());
      }
    }
    this.onmessage?.({ data });
  }

  #flush(): void {
    const session = this.#session;
    if (this.#posting || this.#done || session === undefined || this.#outbox.length === 0) return;
    const frames = this.#outbox;
    this.#outbox = [];
    this.#posting = true;
    fetch(this.#emulation, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "include",
      body: `{"session":${JSON.stringify(session)},"frames":[${frames.join(",")}]}`,
    }).then(
      (response) => {
        this.#posting = false;
        // 404: the session ended (a close event may be on its way; whichever comes first ends it).
        if (response.status !== 204) this.#end(LOST, `POST /emulation answered ${response.status}`);
        else this.#flush();
      },
      (error: unknown) => {
        this.#posting = false;
        this.onerror?.({ error });
        this.#end(LOST, "POST /emulation failed");
      },
    );
  }

  #end(code: number, reason: string): void {
    if (this.#done) return;
    this.close();
    this.onclose?.({ code, reason });
  }
}

/** GET /sse beside a WebSocket endpoint: ws(s) becomes http(s), the path's last segment "sse" (/ws: /sse). */
export function sseUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") return url;
  parsed.protocol = parsed.protocol === "wss:" ? "https:" : "http:";
  parsed.search = "";
  return new URL("sse", parsed).href;
}
