// The bench's presence connections: anonymous members of a room, opened many
// at a time, for bench/presence/index.ts and its storm worker (joiners.ts).

import { WebSocket } from "ws";

/** Connections opened at once while filling a room: enough to be quick, few enough not to flood the accept queue. */
export const OPEN_CONCURRENCY = 200;

export type Frame = { op?: string; id?: number; [key: string]: unknown };

/**
 * A member: connects anonymously to the crier on `port` and subscribes to
 * `room`. Frames after that go to `onFrame`, parsed; without it they are not
 * even parsed, so thousands of members cost the bench little.
 */
export async function member(port: number, room: string, onFrame?: (frame: Frame) => void): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  let subscribed = false;
  await new Promise<void>((resolve, reject) => {
    ws.once("error", reject);
    ws.once("open", () => {
      ws.send(JSON.stringify({ op: "connect", id: 1 }));
      ws.send(JSON.stringify({ op: "subscribe", room, id: 2 }));
    });
    ws.on("message", (data) => {
      const text = String(data);
      if (text === '{"op":"ping"}') {
        ws.send('{"op":"pong"}');
        return;
      }
      if (subscribed) {
        onFrame?.(JSON.parse(text) as Frame);
        return;
      }
      const frame = JSON.parse(text) as Frame;
      if (frame.id !== 2) return;
      subscribed = frame.op === "subscribed";
      if (subscribed) resolve();
      else reject(new Error(`subscribe to ${room} refused: ${text}`));
    });
  });
  return ws;
}

/** Opens `count` members of `room`, member i on ports[i % ports.length], OPEN_CONCURRENCY at a time. */
export async function fill(ports: readonly number[], room: string, count: number, into: WebSocket[]): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      into.push(await member(ports[i % ports.length] as number, room));
    }
  };
  await Promise.all(Array.from({ length: Math.min(OPEN_CONCURRENCY, count) }, worker));
}
