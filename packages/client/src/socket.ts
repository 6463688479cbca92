// The part of the WebSocket API the client uses: what a browser's WebSocket and the
// `ws` package's WebSocket both provide, so either can be passed in.

// Event handler properties are declared through a method signature, which TypeScript
// checks bivariantly: `ws` types its events as richer objects than these, and a
// plain function type would reject them.
type Handler<E> = { bivarianceHack(event: E): void }["bivarianceHack"];

export interface MessageEventLike {
  /** A string for a text frame. */
  data: unknown;
}

export interface CloseEventLike {
  code: number;
  reason: string;
}

export interface ErrorEventLike {
  /** `ws` carries the cause here (e.g. ECONNREFUSED); browsers carry nothing. */
  error?: unknown;
}

export interface WebSocketLike {
  readonly protocol: string;
  /** How binary frames arrive: the client sets "arraybuffer" (browsers default to Blob; `ws` gives Buffers). */
  binaryType?: string;
  onopen: Handler<unknown> | null;
  onmessage: Handler<MessageEventLike> | null;
  onclose: Handler<CloseEventLike> | null;
  onerror: Handler<ErrorEventLike> | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  /** `ws` only: drop the connection without a closing handshake. */
  terminate?(): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/**
 * Stops listening to a socket and ends it. `ws` emits 'error' while aborting a socket
 * that is still connecting, and an EventEmitter with no 'error' listener throws, so a
 * no-op stays attached. `terminate` (when there is one) skips the closing handshake,
 * whose timer would otherwise wait up to 30 s for a peer that may be dead.
 */
export function discardSocket(socket: WebSocketLike, how: "close" | "terminate"): void {
  socket.onopen = null;
  socket.onmessage = null;
  socket.onclose = null;
  socket.onerror = () => {};
  try {
    if (how === "terminate" && typeof socket.terminate === "function") socket.terminate();
    else socket.close(1000, "client closed");
  } catch {
    // Closing an already closed socket may throw in some implementations; it is closed either way.
  }
}
