// Who a connection is, once authenticated: from a verified JWT, the
// `authenticate` hook, the connect proxy, or anonymous.

import type { JsonObject } from "crier-protocol";

export interface Identity {
  /** The JWT `sub`; "" for anonymous connections. */
  user: string;
  /** Shown in presence. */
  info?: JsonObject;
  /** Glob patterns of rooms this connection may subscribe to in `token` namespaces. */
  rooms?: readonly string[];
  /** Glob patterns of rooms this connection may publish to in `token` namespaces. */
  publish?: readonly string[];
  /** When the credentials expire (ms since epoch); the connection is closed with 4005 then, unless renewed. */
  expiresAt?: number;
  /** Rooms the connection is subscribed to by the server right after `connected` (JWT `subs`, connect proxy `rooms`). */
  subs?: readonly string[];
  /** The connect proxy said who this is: its refresh proxy renews the expiry. */
  fromProxy?: boolean;
}

export const ANONYMOUS: Identity = Object.freeze({ user: "" });
