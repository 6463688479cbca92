// An application backend with cookie sessions, answering crier's backend
// proxy (docs/backend.md): who a connection is (from its session cookie),
// which team rooms it may join, what its publications become, and an RPC.
// No framework: node:http, so the example reads the same in any stack.
//
//   node --import tsx examples/backend/backend.ts     (listens on :3000)
//   crier serve --config examples/backend/crier.json

import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** The app's users and their teams (its database, in a real app). */
const TEAMS: Record<string, readonly string[]> = { alice: ["red"], bob: ["blue"], mallory: [] };

/** Users the app has banned: their connections are closed with 4403. */
const BANNED = new Set(["mallory"]);

export interface ExampleBackend {
  readonly url: string;
  readonly server: Server;
  /** Logs `user` in: the value of the session cookie to send. */
  login(user: string): string;
  close(): Promise<void>;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export async function startExampleBackend(port = 0): Promise<ExampleBackend> {
  const sessions = new Map<string, string>();
  const login = (user: string): string => {
    const sid = randomBytes(16).toString("hex");
    sessions.set(sid, user);
    return `sid=${sid}`;
  };
  const userOf = (request: IncomingMessage): string | undefined => {
    const sid = /(?:^|;\s*)sid=([0-9a-f]+)/.exec(request.headers.cookie ?? "")?.[1];
    return sid === undefined ? undefined : sessions.get(sid);
  };

  const answer = (body: Record<string, Json>, request: IncomingMessage): Json => {
    switch (request.url) {
      case "/crier/connect": {
        const user = userOf(request);
        if (user === undefined) return { error: { code: "unauthorized", message: "log in first" } };
        if (BANNED.has(user)) return { disconnect: { code: 4403, reason: "banned" } };
        return {
          result: {
            user,
            info: { name: user[0]?.toUpperCase() + user.slice(1) },
            // Cookie sessions are renewed through the refresh proxy every minute.
            expireAt: Math.floor(Date.now() / 1000) + 60,
            // Every user hears their own notifications without asking.
            rooms: [`notify:${user}`],
          },
        };
      }
      case "/crier/refresh":
        return { result: { expireAt: Math.floor(Date.now() / 1000) + 60 } };
      case "/crier/subscribe": {
        const room = String(body.room);
        const team = /^team:([a-z]+)$/.exec(room)?.[1];
        const user = String(body.user);
        if (team !== undefined && !(TEAMS[user] ?? []).includes(team)) {
          return { error: { code: "forbidden", message: `${user} is not in team ${team}` } };
        }
        return { result: {} };
      }
      case "/crier/publish":
        // The app stamps every message with who sent it, whatever the client claimed.
        return {
          result: {
            data: { text: String((body.data as { text?: unknown } | null)?.text ?? ""), by: String(body.user) },
          },
        };
      case "/crier/rpc":
        if (body.method === "whoami")
          return { result: { data: { user: String(body.user), teams: [...(TEAMS[String(body.user)] ?? [])] } } };
        return { error: { code: "bad_request", message: `no method '${String(body.method)}'` } };
      default:
        return { error: { code: "bad_request", message: `no proxy at ${request.url}` } };
    }
  };

  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    if (request.method === "GET" && request.url?.startsWith("/login?user=")) {
      const user = decodeURIComponent(request.url.slice("/login?user=".length));
      response.writeHead(200, { "Set-Cookie": `${login(user)}; HttpOnly; SameSite=Lax`, "Content-Type": "text/plain" });
      response.end(`logged in as ${user}\n`);
      return;
    }
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      let body: Record<string, Json>;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, Json>;
      } catch {
        response.writeHead(400).end();
        return;
      }
      response.writeHead(200, { "Content-Type": "application/json" });
      response.end(JSON.stringify(answer(body, request)));
    });
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const address = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}`,
    server,
    login,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const backend = await startExampleBackend(Number(process.env.PORT ?? 3000));
  process.stdout.write(`example backend on ${backend.url}; log in at ${backend.url}/login?user=alice\n`);
}
