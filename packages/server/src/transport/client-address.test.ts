// Which address a request counts against, directly and behind trusted proxies.

import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { test } from "node:test";
import { clientAddress } from "./client-address.js";

const request = (peer: string, forwarded?: string): IncomingMessage =>
  ({
    socket: { remoteAddress: peer },
    headers: forwarded === undefined ? {} : { "x-forwarded-for": forwarded },
  }) as unknown as IncomingMessage;

test("without trusted proxies the TCP peer counts, whatever X-Forwarded-For says", () => {
  assert.equal(clientAddress(request("10.0.0.1", "1.2.3.4"), 0), "10.0.0.1");
});

test("behind one trusted proxy the address it appended counts, not what the client wrote before it", () => {
  assert.equal(clientAddress(request("10.0.0.1", "6.6.6.6, 203.0.113.9"), 1), "203.0.113.9");
  assert.equal(clientAddress(request("10.0.0.1", "203.0.113.9"), 1), "203.0.113.9");
  assert.equal(clientAddress(request("10.0.0.1", "6.6.6.6, 203.0.113.9, 10.0.0.2"), 2), "203.0.113.9");
  assert.equal(clientAddress(request("10.0.0.1"), 1), "10.0.0.1", "no header: the peer");
});
