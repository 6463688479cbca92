// A client frame as it arrives: within the size limit, of the subprotocol's
// kind (text for JSON, binary for MessagePack), and decoded by crier-protocol.
// What fails here ends the connection with the close code returned.

import { CloseCode, type DecodedFrame, decodeClientFrame } from "crier-protocol";
import { decodeClientFrameMsgpack } from "crier-protocol/msgpack";

export type Inbound = Exclude<DecodedFrame, { kind: "fatal" }> | { kind: "close"; code: number; reason: string };

export function decodeInbound(data: Buffer, isBinary: boolean, binary: boolean, maxFrameBytes: number): Inbound {
  if (data.length > maxFrameBytes) {
    return {
      kind: "close",
      code: CloseCode.MessageTooLarge,
      reason: `frame of ${data.length} bytes is over the limit of ${maxFrameBytes}`,
    };
  }
  if (isBinary !== binary) {
    const reason = binary ? "text frame on the MessagePack subprotocol" : "binary frame on the JSON subprotocol";
    return { kind: "close", code: CloseCode.BadFrame, reason };
  }
  const decoded = binary ? decodeClientFrameMsgpack(data) : decodeClientFrame(data.toString("utf8"));
  if (decoded.kind === "fatal") return { kind: "close", code: CloseCode.BadFrame, reason: decoded.reason };
  return decoded;
}
