// Before any load: one connection to each URL does what the run's connections
// will do (connect with their credentials, subscribe to one of this run's
// rooms) and one publication goes out the way the run's will (client command
// or HTTP API). A refusal stops the run with what was refused and what to pass
// instead, rather than thousands of failed connections against a deployment.

import { WebSocket } from "ws";
import { signToken } from "../tokens.js";
import type { ExternalTarget } from "./target.js";

const PROBE_TIMEOUT_MS = 10_000;
const PROBE_DATA = "crier bench probe";

interface Reply {
  op?: unknown;
  id?: unknown;
  code?: unknown;
  message?: unknown;
}

/** Probes every URL; resolves when all is well, rejects with an explanation otherwise. */
export async function probe(target: ExternalTarget, what: { rooms: boolean; publish: "room" | "user" | undefined }) {
  const user = `${target.userPrefix}probe`;
  const room = `${target.roomPrefix}probe`;
  const token =
    target.auth.kind === "token"
      ? target.auth.token
      : target.auth.kind === "jwt-secret"
        ? await signToken(target.auth.secret, {
            sub: user,
            rooms: [`${target.roomPrefix}*`],
            publish: [`${target.roomPrefix}*`],
          })
        : undefined;
  for (const [i, url] of target.urls.entries()) {
    const connection = await ProbeConnection.open(url);
    try {
      await connection
        .call({ op: "connect", name: "crier-bench", ...(token === undefined ? {} : { token }) })
        .catch((error: Error) => {
          throw new Error(
            `${url}: connect refused (${error.message})` +
              (target.auth.kind === "anonymous" ? "; pass --token JWT or --jwt-secret SECRET" : ""),
          );
        });
      if (what.rooms) {
        await connection.call({ op: "subscribe", room }).catch((error: Error) => {
          throw new Error(
            `${url}: subscribe to ${room} refused (${error.message}); ` +
              "a token whose rooms claim allows it (--jwt-secret signs one) or another --room-prefix may help",
          );
        });
      }
      // One publication per run is enough to learn whether the run's will be accepted.
      if (i === 0 && what.publish !== undefined) await publishOnce(target, connection, what.publish, room, user, url);
    } finally {
      connection.close();
    }
  }
}

async function publishOnce(
  target: ExternalTarget,
  connection: ProbeConnection,
  kind: "room" | "user",
  room: string,
  user: string,
  url: string,
): Promise<void> {
  const endpoint = target.endpoints[0];
  if (target.apiKey !== undefined && endpoint?.api !== undefined) {
    const path = kind === "room" ? "/api/publish" : "/api/send";
    const body = kind === "room" ? { room, data: PROBE_DATA } : { user, data: PROBE_DATA };
    let response: Response;
    try {
      response = await fetch(`${endpoint.api}${path}`, {
        method: "POST",
        headers: { Authorization: `Bearer ${target.apiKey}`, "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
      });
    } catch (error) {
      throw new Error(`${endpoint.api}${path}: ${(error as Error).message}`);
    }
    const text = await response.text();
    if (!response.ok) {
      throw new Error(
        `${endpoint.api}${path} answered HTTP ${response.status}: ${text.slice(0, 200)}` +
          (response.status === 401 ? " (is --api-key the deployment's API key?)" : ""),
      );
    }
    return;
  }
  const command = kind === "room" ? { op: "publish", room, data: PROBE_DATA } : { op: "send", user, data: PROBE_DATA };
  await connection.call(command).catch((error: Error) => {
    throw new Error(
      `${url}: ${command.op} refused (${error.message}); if the deployment does not let clients ` +
        `${command.op}, pass --api-key KEY to go through the HTTP API`,
    );
  });
}

/** One JSON-protocol connection whose commands wait for their replies. */
class ProbeConnection {
  private readonly ws: WebSocket;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  private nextId = 1;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on("message", (data) => this.receive(String(data)));
    ws.on("close", (code, reason) => this.failAll(new Error(`connection closed: ${code} ${String(reason)}`)));
  }

  static open(url: string): Promise<ProbeConnection> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { handshakeTimeout: PROBE_TIMEOUT_MS });
      ws.once("open", () => resolve(new ProbeConnection(ws)));
      ws.once("unexpected-response", (_request, response) => {
        ws.terminate();
        reject(
          new Error(
            `${url}: the upgrade was refused with HTTP ${response.statusCode}` +
              (response.statusCode === 404 ? " (crier's WebSocket path is /ws unless configured otherwise)" : ""),
          ),
        );
      });
      ws.on("error", (error) => {
        // crier drops upgrades on any other path without a response.
        const hint =
          error.message === "socket hang up" ? " (crier's WebSocket path is /ws unless configured otherwise)" : "";
        reject(new Error(`${url}: cannot open a WebSocket: ${error.message}${hint}`));
      });
    });
  }

  /** Sends `command` with an id; resolves on its reply, rejects on its error or after the timeout. */
  call(command: Record<string, unknown>): Promise<void> {
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`no reply within ${PROBE_TIMEOUT_MS} ms`));
      }, PROBE_TIMEOUT_MS);
      const settle = (error?: Error): void => {
        clearTimeout(timer);
        if (error === undefined) resolve();
        else reject(error);
      };
      this.waiting.set(id, { resolve: () => settle(), reject: settle });
      this.ws.send(JSON.stringify({ ...command, id }));
    });
  }

  close(): void {
    this.failAll(new Error("closed"));
    this.ws.close(1000);
  }

  private receive(text: string): void {
    let reply: Reply;
    try {
      reply = JSON.parse(text) as Reply;
    } catch {
      return;
    }
    if (reply.op === "ping") {
      this.ws.send('{"op":"pong"}');
      return;
    }
    // `connected` answers the connect, sent first with id 1, whatever id it carries.
    const id = typeof reply.id === "number" ? reply.id : reply.op === "connected" ? 1 : undefined;
    const waiter = id === undefined ? undefined : this.waiting.get(id);
    if (id === undefined || waiter === undefined) return;
    this.waiting.delete(id);
    if (reply.op === "error") waiter.reject(new Error(`${String(reply.code)}: ${String(reply.message)}`));
    else waiter.resolve();
  }

  private failAll(error: Error): void {
    for (const waiter of this.waiting.values()) waiter.reject(error);
    this.waiting.clear();
  }
}
