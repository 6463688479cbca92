// Per-namespace rules (ARCHITECTURE.md "Configuration"): who may subscribe
// (`public`, `token`) and who may publish from a client (`subscribers`,
// `token`, `none`). The `default` entry applies to rooms without a namespace and
// to namespaces not listed.

import { namespaceOf, ProtocolError } from "crier-protocol";
import { type NamespaceConfig, namespaceSchema } from "../config/schema.js";
import { matchesAny } from "./glob.js";
import type { Identity } from "./identity.js";

export type RoomAction = "subscribe" | "publish";

export class RoomPolicy {
  private readonly namespaces: ReadonlyMap<string, NamespaceConfig>;
  private readonly fallback: NamespaceConfig;

  constructor(namespaces: Readonly<Record<string, NamespaceConfig>>) {
    this.namespaces = new Map(Object.entries(namespaces));
    this.fallback = namespaces.default ?? namespaceSchema.parse({});
  }

  /** The options of `room`'s namespace. */
  options(room: string): NamespaceConfig {
    const name = namespaceOf(room);
    return (name === "" ? undefined : this.namespaces.get(name)) ?? this.fallback;
  }

  /** The namespace name as users wrote it in config, for error messages. */
  describe(room: string): string {
    const name = namespaceOf(room);
    return name !== "" && this.namespaces.has(name) ? `namespace '${name}'` : "the default namespace";
  }

  /** Throws ProtocolError("forbidden") when `identity` may not do `action` in `room`. */
  check(identity: Identity, room: string, action: RoomAction, subscribed: boolean): void {
    const options = this.options(room);
    if (action === "subscribe") {
      if (options.subscribe === "public") return;
      if (matchesAny(identity.rooms, room)) return;
      throw new ProtocolError("forbidden", `subscribing to '${room}' needs a token whose 'rooms' claim matches it`);
    }
    switch (options.publish) {
      case "subscribers":
        if (subscribed) return;
        throw new ProtocolError(
          "forbidden",
          `publishing to '${room}' is allowed to its subscribers only: subscribe first`,
        );
      case "token":
        if (matchesAny(identity.publish, room)) return;
        throw new ProtocolError("forbidden", `publishing to '${room}' needs a token whose 'publish' claim matches it`);
      case "none":
        throw new ProtocolError(
          "forbidden",
          `clients may not publish in ${this.describe(room)}: publish from the backend (HTTP API)`,
        );
    }
  }
}
