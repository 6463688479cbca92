// A decision to close a connection with a given code, thrown by whatever
// decides it (the backend proxy's `disconnect` answer) and carried out by the
// session: its close code and reason reach the client as they are.

import { Disconnect } from "crier-protocol";

export class DisconnectError extends Error {
  readonly disconnect: Disconnect;

  constructor(code: number, reason: string) {
    super(`disconnect ${code}: ${reason}`);
    this.name = "DisconnectError";
    this.disconnect = new Disconnect(code, reason);
  }
}
