// The close code of a refused `connect`: what the refusal says about the
// credentials, so a client knows whether to get a new token (4005), give up
// (4003, 4004) or try again (1011). A backend's `disconnect` answer carries
// its own code (disconnect-error.ts).

import { CloseCode, ProtocolError } from "crier-protocol";
import { TokenExpiredError } from "./jwt.js";

export function connectRefusalCode(error: unknown): number {
  if (error instanceof TokenExpiredError) return CloseCode.TokenExpired;
  if (error instanceof ProtocolError && error.code === "unauthorized") return CloseCode.Unauthorized;
  if (error instanceof ProtocolError && error.code === "forbidden") return CloseCode.Forbidden;
  return CloseCode.ServerError;
}
