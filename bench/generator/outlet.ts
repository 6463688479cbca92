// Where a publisher's publications go out: its own WebSocket connection (a
// client publish or send, in the target's dialect), or the HTTP API of the
// instance it is connected to (a backend publishing, for deployments whose
// namespaces refuse client publishes). The scheduler sees only `publish`.

import type { Dialect } from "./dialect.js";
import type { RawWs } from "./raw-ws.js";

export interface Outlet {
  /** Writes one publication to `target` (a room or a user); false when it could not go out. */
  publish(kind: "room" | "user", target: string, payloadJson: string): boolean;
}

/** Publications as client frames on the publisher's connection, without an ack. */
export function wsOutlet(ws: RawWs, dialect: Dialect): Outlet {
  return {
    publish: (kind, target, payloadJson) =>
      ws.send(kind === "room" ? dialect.publish(target, payloadJson) : dialect.send(target, payloadJson)),
  };
}

/**
 * Publications as `POST /api/publish` (rooms) or `POST /api/send` (users),
 * open-loop: requests are not awaited, but at most `maxInFlight` are pending
 * per outlet; past that a publication is refused (counted by the scheduler)
 * rather than queued, so a slow API shows as publications not sent.
 */
export class HttpOutlet implements Outlet {
  private inFlight = 0;
  private readonly origin: string;
  private readonly headers: Record<string, string>;
  private readonly maxInFlight: number;
  private readonly onError: (message: string) => void;

  constructor(origin: string, apiKey: string, maxInFlight: number, onError: (message: string) => void) {
    this.origin = origin;
    this.headers = { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json" };
    this.maxInFlight = maxInFlight;
    this.onError = onError;
  }

  publish(kind: "room" | "user", target: string, payloadJson: string): boolean {
    if (this.inFlight >= this.maxInFlight) return false;
    this.inFlight++;
    const path = kind === "room" ? "/api/publish" : "/api/send";
    const body = `{${kind === "room" ? '"room"' : '"user"'}:${JSON.stringify(target)},"data":${payloadJson}}`;
    fetch(`${this.origin}${path}`, { method: "POST", headers: this.headers, body })
      .then(async (response) => {
        const text = await response.text();
        if (!response.ok) this.onError(`HTTP ${response.status} from ${path}: ${text.slice(0, 160)}`);
      })
      .catch((error: unknown) => this.onError(`${path}: ${(error as Error).message}`))
      .finally(() => {
        this.inFlight--;
      });
    return true;
  }
}
