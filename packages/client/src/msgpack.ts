// crier-client/msgpack: the crier.v1.msgpack subprotocol for the SDK. Frames are
// MessagePack maps in binary WebSocket frames, smaller than JSON and without
// JSON's number and string escaping costs; the API is the same.
//
//   import { msgpackCodec } from "crier-client/msgpack";
//   const client = new CrierClient(url, { codec: msgpackCodec });

import { SUBPROTOCOL_MSGPACK } from "crier-protocol";
import { decodeServerFrameMsgpack, encodeClientFrameMsgpack } from "crier-protocol/msgpack";
import { bytesOf, type Codec } from "./codec.js";

export type { Codec } from "./codec.js";

export const msgpackCodec: Codec = {
  protocol: SUBPROTOCOL_MSGPACK,
  binary: true,
  encode: (command) => encodeClientFrameMsgpack(command),
  decode: (data) => {
    const bytes = bytesOf(data);
    return bytes === undefined ? undefined : decodeServerFrameMsgpack(bytes);
  },
};
