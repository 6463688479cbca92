import assert from "node:assert/strict";
import { Socket } from "node:net";
import { test } from "node:test";
import { SocketWriter, WriteBatcher } from "./write-batcher.js";

const nextTick = (): Promise<void> => new Promise((resolve) => process.nextTick(resolve));

test("same tick: the first write is not corked; a second corks the socket until the next tick", async () => {
  const batcher = new WriteBatcher(0);
  const writer = new SocketWriter(new Socket());
  batcher.hold(writer);
  assert.equal(writer.socket.writableCorked, 0, "one frame per tick goes out at once");
  batcher.hold(writer);
  batcher.hold(writer);
  assert.equal(writer.socket.writableCorked, 1, "the rest of the burst is corked, once");
  await nextTick();
  assert.equal(writer.socket.writableCorked, 0, "uncorked on the next tick");
  batcher.hold(writer);
  assert.equal(writer.socket.writableCorked, 0, "with no window, a new tick writes at once");
  writer.socket.destroy();
});

test("window: a write soon after the last one waits for the window's end; a write after a pause does not", async (t) => {
  // The window's timer is mocked, so the test decides when the window ends. The
  // window is long, so the real time between the two writes below is well inside it.
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const batcher = new WriteBatcher(10_000);
  const busy = new SocketWriter(new Socket());
  batcher.hold(busy);
  await nextTick();
  batcher.hold(busy);
  assert.equal(busy.socket.writableCorked, 1, "within the window of its last write: held");
  t.mock.timers.tick(9_999);
  assert.equal(busy.socket.writableCorked, 1, "still held 1 ms before the window ends");
  t.mock.timers.tick(1);
  assert.equal(busy.socket.writableCorked, 0, "sent when the window ends");
  const quiet = new SocketWriter(new Socket());
  batcher.hold(quiet);
  assert.equal(quiet.socket.writableCorked, 0, "a socket with no recent write is not delayed");
  busy.socket.destroy();
  quiet.socket.destroy();
});
