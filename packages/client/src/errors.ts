// Failures the SDK itself decides (no reply in time, connection gone, client closed),
// as values with a code a caller can switch on. Failures the server reports arrive as
// crier-protocol's ProtocolError, with the code of the `error` frame.

export type ClientErrorCode =
  /** A command was issued while the client is not connected and not reconnecting (before connect(), after close()). */
  | "not_connected"
  /** A command was issued while reconnecting and `maxQueuedCommands` commands were already waiting. */
  | "queue_full"
  /** No reply within `ackTimeoutMs`. */
  | "timeout"
  /** The connection dropped after the command was sent and before its reply came; it may or may not have run. */
  | "disconnected"
  /** close() was called, or the server ended the connection with a code the client does not come back from. */
  | "closed"
  /** The subscription was unsubscribed before the server confirmed it. */
  | "unsubscribed"
  /** The server sent something this SDK cannot read: not JSON, a binary frame, a reply of the wrong kind. */
  | "bad_frame"
  /** The server chose a subprotocol this SDK does not speak (it speaks crier.v1.json). */
  | "unsupported_protocol";

export class CrierClientError extends Error {
  readonly code: ClientErrorCode;
  /** The WebSocket close code, when the error comes from a closed connection. */
  readonly closeCode: number | undefined;

  constructor(code: ClientErrorCode, message: string, closeCode?: number) {
    super(message);
    this.name = "CrierClientError";
    this.code = code;
    this.closeCode = closeCode;
  }
}

export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}
