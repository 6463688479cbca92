// The commands a connected session answers with one reply and no change to
// its own state: publish, send, presence, presence_stats, history and rpc.
// Each authorizes, asks the node's parts, and returns the reply frame; the
// session sends it with the command's id.

import { type ClientCommand, ProtocolError, type ReplyFrame } from "crier-protocol";
import type { SessionHost, SessionView } from "./host.js";

/** The commands answer() handles; the session itself handles the others. */
export type AnsweredCommand = Extract<
  ClientCommand,
  { op: "publish" | "send" | "presence" | "presence_stats" | "history" | "rpc" }
>;

const ANSWERED: ReadonlySet<ClientCommand["op"]> = new Set([
  "publish",
  "send",
  "presence",
  "presence_stats",
  "history",
  "rpc",
]);

export function isAnswered(command: ClientCommand): command is AnsweredCommand {
  return ANSWERED.has(command.op);
}

/** Runs `command` for `session`; throws ProtocolError (or the backend's refusal) when refused. */
export async function answer(host: SessionHost, session: SessionView, command: AnsweredCommand): Promise<ReplyFrame> {
  switch (command.op) {
    case "publish": {
      const data = await host.auth.authorizePublish(session, command.room, command.data);
      const result = await host.rooms.publish(command.room, JSON.stringify(data), session.user);
      return { op: "ok", ...result };
    }
    case "send":
      checkMaySend(host.settings.clientSend, session.user);
      await host.rooms.send(command.user, JSON.stringify(command.data), session.user);
      return { op: "ok" };
    case "presence": {
      // A client sees who is in a room only if it could be there itself.
      await host.auth.authorize(session, command.room, "subscribe");
      const members = await host.queries.presence(command.room);
      return { op: "presence", room: command.room, members };
    }
    case "presence_stats": {
      await host.auth.authorize(session, command.room, "subscribe");
      const stats = await host.queries.presenceStats(command.room);
      return { op: "presence_stats", room: command.room, ...stats };
    }
    case "history":
      return host.queries.history(command.room, command.since, command.limit);
    case "rpc": {
      if (host.proxy === undefined) {
        throw new ProtocolError("bad_request", "rpc is not available: this server has no rpc proxy (proxy.rpc)");
      }
      const data = await host.proxy.rpc(session, command.method, command.data);
      return { op: "rpc", data };
    }
  }
}

function checkMaySend(policy: SessionHost["settings"]["clientSend"], user: string): void {
  if (policy === "none") throw new ProtocolError("forbidden", "clients may not send to users on this server");
  if (policy === "authenticated" && user === "") {
    throw new ProtocolError("forbidden", "anonymous connections may not send to users");
  }
}
