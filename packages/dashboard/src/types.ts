// The shapes of the HTTP API's replies that the console reads (docs/protocol.md, "HTTP API").

export interface NodeInfo {
  id: string;
  address: string;
  connections: number;
  rooms: number;
  startedAt: number;
  updatedAt: number;
  load?: number;
}

export interface Info {
  node: string;
  nodes: NodeInfo[];
}

export interface Sample {
  t: number;
  connections: number;
  messagesIn: number;
  messagesOut: number;
  deliveries: number;
  latencyMs: number | null;
  latencyMaxMs: number | null;
  ready: 0 | 1;
  reconnects: number;
  slowConsumers: number;
  rateLimited: number;
}

export interface Missing {
  node: string;
  error: { code: string; message: string };
}

export interface Stats {
  nodes: { node: string; ready: boolean; samples: Sample[] }[];
  missing: Missing[];
}

export interface Rooms {
  rooms: { room: string; members: number; messagesPerSecond: number }[];
  missing: Missing[];
}

export interface Subscribers {
  room: string;
  history: boolean;
  presence: boolean;
  subscribers: { client: string; user: string; node: string }[];
  missing: Missing[];
}

export interface Connection {
  client: string;
  user: string;
  node: string;
  transport: string;
  address: string;
  connectedAt: number;
  rooms: string[];
}

export interface Connections {
  connections: Connection[];
  missing: Missing[];
}

export interface Warnings {
  totals: Record<string, number>;
  recent: { kind: string; at: number; node: string; detail: string }[];
  missing: Missing[];
}

export interface History {
  messages: { offset: number; data: unknown; from?: string }[];
}

export interface Presence {
  members: { user: string; client: string }[];
}
