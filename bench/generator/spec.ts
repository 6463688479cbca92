// What the generator runs: connections (where to connect, who they are, which
// rooms they join) and publishers (which connection publishes where). Scenarios
// build these; worker threads execute them.

/** `floor`: bench/peers/floor-server.ts, the least a Node.js server can spend (speaks crier's protocol). */
export type TargetName = "crier" | "socketio" | "floor";

/** Where a connection goes: a local instance, or one of the URLs of an external deployment. */
export interface Endpoint {
  /** Host name or address to connect to (no brackets around IPv6). */
  host: string;
  port: number;
  /** wss: TLS, with the host name for SNI and certificate checks. */
  tls: boolean;
  /** Request path with query; absent: the dialect's. */
  path?: string;
  /** The HTTP API's origin (http(s)://host:port), for publishing through it. */
  api?: string;
}

export interface ConnSpec {
  /** Index of the endpoint (server instance, or URL) to connect to. */
  instance: number;
  /** Rooms joined before traffic starts. */
  rooms: string[];
  /** User id (crier: the token's `sub`; Socket.IO: the handshake's auth.user). */
  user?: string;
  /** crier: JWT to connect with. */
  token?: string;
  /** Source address (127.0.0.x), when one address's ephemeral ports are not enough. */
  localAddress?: string;
}

export interface PublisherSpec {
  /** Index of the publishing connection in the scenario's connection list. */
  conn: number;
  /** `room`: publish to a room; `user`: send to a user. */
  kind: "room" | "user";
  /** Rooms or users, used in turn. */
  targets: string[];
  /** Deliveries each publication must make (members of the room, connections of the user). */
  fanout: number;
}

/** What one worker thread gets at start. */
export interface WorkerInit {
  target: TargetName;
  endpoints: Endpoint[];
  conns: ConnSpec[];
  /** Publishers, with `conn` indexing this worker's `conns`. */
  publishers: PublisherSpec[];
  payloadBytes: number;
  /** Connections set up at once, per worker. */
  concurrency: number;
  timeoutMs: number;
  /** When set, publishers publish through the HTTP API of their connection's endpoint with this key. */
  apiKey?: string;
}
