// "An unsubscribed room delivers nothing more", checked behind a barrier: after
// unsubscribing, the room is published to, then a room the client is still in;
// once the barrier's message has arrived, anything of the left room would have too.

import type { CrierClient, MessagePush, Subscription } from "../../packages/client/src/index.js";
import type { Collector } from "./collector.js";

/**
 * Unsubscribes `subscription`, publishes "after" to its room and "barrier" to `barrier`
 * (which the client subscribes to first), and resolves with the data `got` (every
 * message the client received) holds once the barrier arrived.
 */
export async function dataAfterLeaving(
  client: CrierClient,
  subscription: Subscription,
  barrier: string,
  publish: (room: string, data: string) => Promise<unknown>,
  got: Collector<MessagePush>,
): Promise<unknown[]> {
  await subscription.unsubscribe();
  await client.subscribe(barrier, () => {}).ready;
  const before = got.items.length;
  await publish(subscription.room, "after");
  await publish(barrier, "barrier");
  await got.waitFor(before + 1);
  return got.items.map((message) => message.data);
}
