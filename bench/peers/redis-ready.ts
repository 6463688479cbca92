// The bench's peer servers answer /readyz only once their Redis clients are.

import type { Redis } from "ioredis";

/** Resolves when every client is ready; rejects with the first connection error. */
export function redisReady(clients: readonly Redis[]): Promise<void> {
  return Promise.all(
    clients.map(
      (client) =>
        new Promise<void>((resolve, reject) => {
          if (client.status === "ready") resolve();
          client.once("ready", () => resolve());
          client.once("error", reject);
        }),
    ),
  ).then(() => undefined);
}
