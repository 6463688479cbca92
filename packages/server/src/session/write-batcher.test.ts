import assert from "node:assert/strict";
import { Socket } from "node:net";
import { test } from "node:test";
import { WriteBatcher } from "./write-batcher.js";

test("a socket is corked once per tick and uncorked on the next tick", async () => {
  const batcher = new WriteBatcher();
  const socket = new Socket();
  batcher.hold(socket);
  batcher.hold(socket);
  assert.equal(socket.writableCorked, 1, "held twice in one tick, corked once");
  await new Promise((resolve) => process.nextTick(resolve));
  assert.equal(socket.writableCorked, 0);
  batcher.hold(socket);
  assert.equal(socket.writableCorked, 1, "held again in a later tick");
  await new Promise((resolve) => process.nextTick(resolve));
  assert.equal(socket.writableCorked, 0);
  socket.destroy();
});
