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
  const list =
    options.transports ?? (options.sse !== undefined && !codec.binary ? ["websocket", "sse"] : ["websocket"]);
  if (
    list.length === 0 ||
    list.some((name, i) => (name !== "websocket" && name !== "sse") || list.indexOf(name) !== i)
  ) {
    throw new RangeError(
      `crier-client: option 'transports' must list "websocket" and/or "sse" once each, got ${JSON.stringify(list)}`,
    );
  }
  if (list.includes("sse") && options.sse === undefined) {
    throw new RangeError(
      'crier-client: transport "sse" needs option \'sse\': import { SseSocket } from "crier-client/sse" and pass sse: SseSocket',
    );
  }
  if (list.includes("sse") && codec.binary) {
    throw new RangeError('crier-client: transport "sse" carries JSON only; use the JSON codec or drop "sse"');
  }
  return list;
}

/** GET /sse beside the WebSocket endpoint: ws(s) becomes http(s), the path's last segment "sse" (/ws: /sse). */
export function defaultSseUrl(url: string): string {
  const parsed = new URL(url);
  parsed.protocol = parsed.protocol === "wss:" ? "https:" : parsed.protocol === "ws:" ? "http:" : parsed.protocol;
  parsed.search = "";
  return new URL("sse", parsed).href;
}

/** The next transport to try after one closed before `connected`: the following one in the list, round. */
export function nextTransport(list: readonly TransportName[], current: TransportName): TransportName {
  return list[(list.indexOf(current) + 1) % list.length] ?? current;
}

/** The socket constructor and URL an attempt on `transport` uses. */
export function dialTarget(
  transport: TransportName,
  options: {
    WebSocket: WebSocketConstructor | undefined;
    sse: WebSocketConstructor | undefined;
    sseUrl: string | undefined;
  },
  url: string,
): { WebSocket: WebSocketConstructor; url: string } {
  const socket = transport === "sse" ? options.sse : options.WebSocket;
  // resolveOptions made sure every listed transport has its constructor.
  if (socket === undefined) throw new TypeError(`crier-client: no socket for transport "${transport}"`);
  return { WebSocket: socket, url: transport === "sse" ? (options.sseUrl ?? defaultSseUrl(url)) : url };
}
