// Which transports the client tries, in which order, and where the HTTP
// fallback lives. The fallback's code is not here but in crier-client/sse,
// passed in as the `sse` option, so apps that never need it do not load it.

import type { Codec } from "./codec.js";
import type { WebSocketConstructor } from "./socket.js";

export type TransportName = "websocket" | "sse";

export interface TransportOptions {
  transports?: TransportName[] | undefined;
  WebSocket?: WebSocketConstructor | undefined;
  sse?: WebSocketConstructor | undefined;
}

/** The transports to try, in order: by default the WebSocket, then SSE when `sse` is given and the codec is JSON. */
export function resolveTransports(options: TransportOptions, codec: Codec): TransportName[] {
  const list = options.transports ?? (options.sse && !codec.binary ? ["websocket", "sse"] : ["websocket"]);
  // Short messages: this file is in the browser entry, under its size budget.
  if (list.length === 0 || list.some((name) => name !== "websocket" && name !== "sse"))
    throw new RangeError("crier-client: bad option 'transports'");
  if (list.includes("sse") && (!options.sse || codec.binary))
    throw new RangeError("crier-client: transport sse needs the JSON codec and SseSocket from crier-client/sse");
  return list;
}

/** The next transport to try after one closed before `connected`: the following one in the list, round. */
export function nextTransport(list: readonly TransportName[], current: TransportName): TransportName {
  return list[(list.indexOf(current) + 1) % list.length] ?? current;
}

/**
 * The socket constructor and URL an attempt on `transport` uses. The SSE
 * socket is given `sseUrl`, or the WebSocket URL to find /sse beside
 * (sse-socket.ts), so that finding it costs the browser entry nothing.
 */
export function dialTarget(
  transport: TransportName,
  options: {
    WebSocket?: WebSocketConstructor | undefined;
    sse?: WebSocketConstructor | undefined;
    sseUrl?: string | undefined;
  },
  url: string,
): { WebSocket: WebSocketConstructor; url: string } {
  const sse = transport === "sse";
  // resolveOptions made sure every listed transport has its constructor.
  return {
    WebSocket: (sse ? options.sse : options.WebSocket) as WebSocketConstructor,
    url: sse ? (options.sseUrl ?? url) : url,
  };
}
