// `crier sub ROOM` and `crier pub ROOM JSON`: try a server from a shell with a
// plain WebSocket client speaking docs/protocol.md.

import { parseArgs } from "node:util";
import { decodeServerFrame, isValidRoom, type ServerFrame } from "crier-protocol";
import { WebSocket } from "ws";

const OPTIONS = {
  url: { type: "string" },
  token: { type: "string" },
  help: { type: "boolean" },
} as const;

export const tryHelp = `Usage: crier sub ROOM [--url URL] [--token JWT]
       crier pub ROOM JSON [--url URL] [--token JWT]

sub prints every message published to ROOM, one JSON line each, until interrupted.
pub publishes JSON (any JSON value) to ROOM and prints the server's reply.

  --url URL     WebSocket endpoint (default ws://127.0.0.1:8080/ws, or CRIER_URL)
  --token JWT   connection token, when the server requires one (or CRIER_TOKEN)`;

interface Connection {
  ws: WebSocket;
  /** Sends a command with an id and resolves with its reply (or rejects with its error). */
  call(command: Record<string, unknown>): Promise<ServerFrame>;
  on(handler: (frame: ServerFrame) => void): void;
}

function open(url: string, token: string | undefined): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, "crier.v1.json");
    const waiting = new Map<number, { resolve: (f: ServerFrame) => void; reject: (e: Error) => void }>();
    const handlers: ((frame: ServerFrame) => void)[] = [];
    let nextId = 1;
    const connection: Connection = {
      ws,
      call(command) {
        const id = nextId++;
        ws.send(JSON.stringify({ ...command, id }));
        return new Promise((res, rej) => waiting.set(id, { resolve: res, reject: rej }));
      },
      on(handler) {
        handlers.push(handler);
      },
    };
    ws.on("message", (data) => {
      const frame = decodeServerFrame(String(data));
      if (frame === undefined) return;
      if (frame.op === "ping") {
        ws.send('{"op":"pong"}');
        return;
      }
      const id = "id" in frame ? frame.id : undefined;
      const pending = id === undefined ? undefined : waiting.get(id);
      if (id !== undefined && pending !== undefined) {
        waiting.delete(id);
        if (frame.op === "error") pending.reject(new Error(`${frame.code}: ${frame.message}`));
        else pending.resolve(frame);
        return;
      }
      for (const handler of handlers) handler(frame);
    });
    ws.on("error", (error) => reject(new Error(`cannot connect to ${url}: ${error.message}`)));
    ws.on("close", (code, reason) => {
      const why = new Error(`connection closed: ${code} ${String(reason)}`);
      for (const pending of waiting.values()) pending.reject(why);
      waiting.clear();
    });
    ws.on("open", () => {
      connection
        .call(token === undefined ? { op: "connect", name: "crier-cli" } : { op: "connect", token, name: "crier-cli" })
        .then(() => resolve(connection), reject);
    });
  });
}

export async function tryCommand(command: "sub" | "pub", args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; options: typeof OPTIONS; allowPositionals: true }>>;
  try {
    parsed = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    process.stderr.write(`crier ${command}: ${(error as Error).message}\n${tryHelp}\n`);
    return 2;
  }
  if (parsed.values.help === true) {
    process.stdout.write(`${tryHelp}\n`);
    return 0;
  }
  const [room, json, ...rest] = parsed.positionals;
  const wanted = command === "sub" ? 1 : 2;
  if (parsed.positionals.length !== wanted || room === undefined || rest.length > 0) {
    process.stderr.write(`crier ${command}: expected ${command === "sub" ? "ROOM" : "ROOM JSON"}\n${tryHelp}\n`);
    return 2;
  }
  if (!isValidRoom(room)) {
    process.stderr.write(
      `crier ${command}: '${room}' is not a room name (1-200 characters of A-Z a-z 0-9 _ - : . @ / =)\n`,
    );
    return 2;
  }
  let data: unknown;
  if (command === "pub") {
    try {
      data = JSON.parse(json ?? "");
    } catch {
      process.stderr.write(`crier pub: '${json}' is not JSON; quote strings, e.g. '"hello"' or '{"text":"hi"}'\n`);
      return 2;
    }
  }
  const url = parsed.values.url ?? env.CRIER_URL ?? "ws://127.0.0.1:8080/ws";
  const token = parsed.values.token ?? env.CRIER_TOKEN;
  let connection: Connection;
  try {
    connection = await open(url, token);
  } catch (error) {
    process.stderr.write(`crier ${command}: ${(error as Error).message}\n`);
    return 1;
  }
  try {
    if (command === "sub") {
      connection.on((frame) => {
        if (frame.op === "message" || frame.op === "direct") process.stdout.write(`${JSON.stringify(frame)}\n`);
      });
      const subscribed = await connection.call({ op: "subscribe", room });
      process.stderr.write(`crier sub: ${JSON.stringify(subscribed)}\n`);
      return await new Promise<number>((resolve) => {
        connection.ws.on("close", (code, reason) => {
          process.stderr.write(`crier sub: connection closed: ${code} ${String(reason)}\n`);
          resolve(code === 1000 ? 0 : 1);
        });
        const stop = (): void => connection.ws.close(1000);
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
    }
    // The default namespace lets subscribers publish: subscribe first where allowed.
    await connection.call({ op: "subscribe", room }).catch(() => undefined);
    const reply = await connection.call({ op: "publish", room, data });
    process.stdout.write(`${JSON.stringify(reply)}\n`);
    connection.ws.close(1000);
    return 0;
  } catch (error) {
    process.stderr.write(`crier ${command}: ${(error as Error).message}\n`);
    connection.ws.close(1000);
    return 1;
  }
}
