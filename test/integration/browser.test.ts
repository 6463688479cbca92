// The SDK in a real browser: crier-client bundled for browsers (esbuild), loaded
// by a page in headless Chromium (Debian's, driven by playwright-core), talking
// to a real crier process with the browser's own WebSocket, over JSON and over
// MessagePack (binary frames arrive as ArrayBuffers there, not Buffers), and
// over the HTTP fallback (the browser's EventSource and fetch, cross-origin
// with CORS) when the WebSocket path refuses upgrades.

import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { build } from "esbuild";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "../support/browser.js";
import { api, type ConfigFile, type CrierInstance, REPO_ROOT, startCrier, writeConfig } from "../support/crier.js";

/** What the page's helpers hand back (plain JSON across the page boundary). */
interface Opened {
  user: string;
  recovered: boolean;
  transport: string;
}
interface Collected {
  offset: number | undefined;
  messages: unknown[];
}
type PageGlobals = {
  crierOpen(url: string, codec: string, room: string): Promise<Opened>;
  crierPublishAndCollect(data: unknown, count: number): Promise<Collected>;
  crierClose(): void;
};

/** The page: imports the bundle and keeps one client between the test's steps. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>crier-client in a browser</title>
<script type="module">
import { CrierClient, msgpackCodec, SseSocket } from "/sdk.js";
let client;
const received = [];
let waiting;
const errors = [];
/** Fails after 10 s, with what the client reported, instead of hanging until the test's timeout. */
const within = (promise, what) =>
  Promise.race([
    promise,
    new Promise((_, reject) =>
      setTimeout(() => reject(new Error(what + " within 10 s; client errors: " + errors.join("; "))), 10000),
    ),
  ]);
globalThis.crierOpen = async (url, codec, room) => {
  client = new CrierClient(url, codec === "msgpack" ? { codec: msgpackCodec } : codec === "sse" ? { sse: SseSocket } : {});
  client.on("error", (error) => errors.push(error.message));
  globalThis.crierRoom = room;
  const info = await within(client.connect(), "no connected reply");
  const subscription = client.subscribe(room, (message) => {
    received.push(message.data);
    if (waiting !== undefined && received.length >= waiting.count) waiting.resolve();
  });
  const ready = await within(subscription.ready, "no subscribed reply");
  return { user: info.user, recovered: ready.recovered, transport: client.transport };
};
globalThis.crierPublishAndCollect = async (data, count) => {
  const ack = await client.publish(globalThis.crierRoom, data);
  if (received.length < count) {
    await new Promise((resolve, reject) => {
      waiting = { count, resolve };
      setTimeout(() => reject(new Error("only " + received.length + " of " + count + " messages")), 10000);
    });
  }
  return { offset: ack.offset, messages: received.slice() };
};
globalThis.crierClose = () => client.close();
</script>`;

let config: ConfigFile | undefined;
let crier: CrierInstance;
let site: Server;
let siteUrl = "";
let browser: Browser;

before(async () => {
  // The page is served from another port of 127.0.0.1: another origin, which crier refuses by default.
  config = await writeConfig({
    allowAnonymous: true,
    allowedOrigins: ["http://127.0.0.1:*"],
    namespaces: { chat: { history: { size: 50, ttl: "10m" } } },
    // Chromium offers permessage-deflate: the WebSocket cases read compressed frames.
    delivery: { compression: { enabled: true } },
  });
  crier = await startCrier({ args: ["--config", config.path] });
  // The SDK and its MessagePack entry point, bundled as a browser app would bundle them.
  const bundle = await build({
    stdin: {
      contents:
        'export * from "crier-client"; export { msgpackCodec } from "crier-client/msgpack"; export { SseSocket } from "crier-client/sse";',
      resolveDir: REPO_ROOT,
      sourcefile: "sdk-entry.ts",
      loader: "ts",
    },
    bundle: true,
    format: "esm",
    platform: "browser",
    // The SDK's sources, not a build: the packaging test bundles the built package.
    conditions: ["crier-source"],
    target: "chrome120",
    write: false,
  });
  const sdk = bundle.outputFiles[0]?.text ?? "";
  assert.ok(sdk.length > 0, "esbuild produced the bundle");
  site = createServer((request, response) => {
    if (request.url === "/sdk.js") response.writeHead(200, { "Content-Type": "text/javascript" }).end(sdk);
    else if (request.url === "/") response.writeHead(200, { "Content-Type": "text/html" }).end(PAGE);
    else response.writeHead(404).end();
  });
  await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
  siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => site?.close(resolve));
  await crier?.stop();
  await config?.remove();
});

/** crier_compressed_frames_total: publications compressed with permessage-deflate so far. */
async function compressedFrames(): Promise<number> {
  const text = await (await fetch(`${crier.httpUrl}/metrics`)).text();
  const line = text.split("\n").find((row) => row.startsWith("crier_compressed_frames_total{"));
  assert.ok(line !== undefined, "compression is enabled, so its metrics are exported");
  return Number(line.split(" ").at(-1));
}

async function openPage(): Promise<Page> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(siteUrl);
  await page.waitForFunction(() => typeof (globalThis as unknown as Partial<PageGlobals>).crierOpen === "function");
  assert.deepEqual(errors, []);
  return page;
}

describe("crier-client in headless Chromium", () => {
  // "sse": JSON over the HTTP fallback, forced by a WebSocket path that refuses upgrades.
  for (const codec of ["json", "msgpack", "sse"]) {
    test(`${codec}: connect, subscribe, receive a server publish and its own, with offsets`, async () => {
      const page = await openPage();
      const room = `chat:browser-${codec}`;
      try {
        const opened = await page.evaluate(
          ([url, name, where]) => (globalThis as unknown as PageGlobals).crierOpen(url, name, where),
          [codec === "sse" ? crier.url.replace(/\/ws$/, "/blocked") : crier.url, codec, room] as const,
        );
        assert.deepEqual(opened, { user: "", recovered: false, transport: codec === "sse" ? "sse" : "websocket" });

        // Large enough to be compressed (delivery.compression.minBytes) for a WebSocket page.
        const fromServer = { from: "server", n: 2 ** 33, text: "é ✓ ".repeat(200) };
        const compressedBefore = await compressedFrames();
        assert.equal((await api(crier, "/api/publish", { room, data: fromServer })).status, 200);
        const fromPage = { from: "page", list: [1, null, true], codec };
        const collected = await page.evaluate(
          ([data]) => (globalThis as unknown as PageGlobals).crierPublishAndCollect(data, 2),
          [fromPage] as const,
        );
        assert.deepEqual(collected.messages, [fromServer, fromPage]);
        // Only WebSocket pages negotiate the extension; the SSE stream is never compressed by crier.
        assert.equal((await compressedFrames()) - compressedBefore, codec === "sse" ? 0 : 1);
        assert.equal(collected.offset, 2, "the room keeps history: the page's publish is its second message");

        const history = await api(crier, `/api/history?room=${encodeURIComponent(room)}`);
        assert.equal(history.status, 200);
        const stored = (history.body as { messages: { data: unknown }[] }).messages.map((m) => m.data);
        assert.deepEqual(stored, [fromServer, fromPage]);
      } finally {
        await page.evaluate(() => (globalThis as unknown as PageGlobals).crierClose());
        await page.close();
      }
    });
  }
});
