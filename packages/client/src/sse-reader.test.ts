import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { readEventStream } from "./sse-reader.js";
import { Inbox } from "./testing/inbox.js";

test("events split across chunks, with CRLF, several data lines and comments, then the end", async () => {
  const server = createServer((_request, response) => {
    response.writeHead(200, { "Content-Type": "text/event-stream" });
    response.write('data: {"op":"ping"}\n\n: a comment\r\ndata: {"a":\r\n');
    setImmediate(() => response.end('data:1}\r\n\r\ndata: {"op":"close","code":4500,"reason":"x"}\n\n'));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/sse`;
  const events = new Inbox<string>();
  const ended = new Inbox<string>();
  readEventStream(
    url,
    (data) => events.push(data),
    (reason) => ended.push(reason),
  );
  assert.equal(await events.next(), '{"op":"ping"}');
  assert.deepEqual(JSON.parse(await events.next()), { a: 1 });
  assert.equal(await events.next(), '{"op":"close","code":4500,"reason":"x"}');
  assert.equal(await ended.next(), "the event stream ended");
  server.close();
});

test("a refused stream ends with the status", async () => {
  const server = createServer((_request, response) => response.writeHead(404).end());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/sse`;
  const ended = new Inbox<string>();
  readEventStream(
    url,
    () => {},
    (reason) => ended.push(reason),
  );
  assert.equal(await ended.next(), "GET /sse answered 404");
  const stop = readEventStream(
    url,
    () => {},
    (reason) => ended.push(reason),
  );
  stop();
  // A reader started after it is the barrier: its end is the first (and only) one reported.
  readEventStream(
    url,
    () => {},
    (reason) => ended.push(`barrier: ${reason}`),
  );
  assert.equal(await ended.next(), "barrier: GET /sse answered 404");
  assert.deepEqual(ended.unread, []);
  server.close();
});
