// Type-checked by test/integration/packaging.test.ts in a project that installed
// the packed packages (tsconfig.json here: module and moduleResolution nodenext,
// strict, skipLibCheck off), so it checks the shipped declarations. Each line
// expected to be an error fails the check if the types ever decay to `any`.

import { createServer } from "node:http";
import {
  CloseCode,
  ConfigError,
  type CrierConfigInput,
  type CrierHooks,
  CrierNode,
  CrierPublisher,
  type PublishResult,
} from "crier";
import { type ClientOptions, CrierClient, CrierClientError, type MessagePush } from "crier-client";
import { msgpackCodec } from "crier-client/msgpack";
import { isValidRoom, type ServerFrame } from "crier-protocol";
import { encodeClientFrameMsgpack } from "crier-protocol/msgpack";

const config: CrierConfigInput = {
  apiKey: "a-long-enough-api-key",
  namespaces: { chat: { history: { size: 100, ttl: "10m" }, presence: true } },
};

const hooks: CrierHooks = {
  authenticate: async (_request, connect) => (connect.token === undefined ? undefined : { user: "u1" }),
  authorize: async (_session, room, action) => (action === "publish" ? room.startsWith("chat:") : undefined),
};

export async function embed(): Promise<number | undefined> {
  const crier = await CrierNode.create({ config, hooks });
  const server = createServer();
  crier.attach(server);
  const result: PublishResult = await crier.publish("chat:1", { text: "hi" });
  // @ts-expect-error publications are JSON values
  await crier.publish("chat:1", () => {});
  await crier.close();
  return result.offset;
}

export function publisher(): Promise<CrierPublisher> {
  return CrierPublisher.connect({ redis: "redis://127.0.0.1:6379" });
}

export function client(url: string): CrierClient {
  const options: ClientOptions = { codec: msgpackCodec, token: () => Promise.resolve("jwt"), ackTimeoutMs: 5000 };
  const sdk = new CrierClient(url, options);
  sdk.subscribe("chat:1", (message: MessagePush) => console.log(message.data, message.offset));
  sdk.on("disconnected", ({ code, willReconnect }) => console.log(code === CloseCode.ShuttingDown, willReconnect));
  // @ts-expect-error publish takes a room and the data
  void sdk.publish("chat:1");
  return sdk;
}

export function isError(error: unknown): string | undefined {
  if (error instanceof CrierClientError) return error.code;
  if (error instanceof ConfigError) return error.problems.join("; ");
  return undefined;
}

export const frame: ServerFrame = { op: "ping" };
export const bytes: Uint8Array = encodeClientFrameMsgpack({ op: "ping" });
export const valid: boolean = isValidRoom("chat:1");
