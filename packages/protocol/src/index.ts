// crier-protocol: the wire format of docs/protocol.md v1, shared by the server and the SDK.

export type { CloseCodeValue, ErrorCode } from "./codes.js";
export { CloseCode, Disconnect, ERROR_CODES, ProtocolError, shouldReconnect } from "./codes.js";
export {
  decodeServerFrame,
  encodeDirectFrame,
  encodeMemberFrame,
  encodeMessageFrame,
  encodeServerFrame,
} from "./json.js";
export { isValidRoom, MAX_ROOM_LENGTH, namespaceOf } from "./room.js";
export type * from "./types.js";
export type { DecodedFrame } from "./validate.js";
export { decodeClientFrame, validateClientFrame } from "./validate.js";

export const SUBPROTOCOL_JSON = "crier.v1.json";
export const SUBPROTOCOL_MSGPACK = "crier.v1.msgpack";
