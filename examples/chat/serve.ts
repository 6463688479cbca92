// `npm run demo`: a chat in the browser, on crier. One HTTP server serves the
// page, the page's script (demo.ts with the SDK, bundled by esbuild at start)
// and crier itself (WebSockets on /ws and the HTTP API), on one port.
//
//   npm run demo                                   # http://127.0.0.1:8080/, in-memory broker
//   npm run demo -- --port 8081 --redis redis://127.0.0.1:6379   # several, sharing Redis
//
// The "chat" namespace keeps history (200 messages, 1 hour) and presence, with
// join and leave events; connections are anonymous. Not for production: it
// turns authentication off.

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { build } from "esbuild";
import { pino } from "pino";
import { CrierNode } from "../../packages/server/src/node.js";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "8080" },
    host: { type: "string", default: "127.0.0.1" },
    redis: { type: "string" },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`demo: --port must be a port number, not ${values.port}\n`);
  process.exit(2);
}

const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));
const page = readFileSync(here("./index.html"));
const bundle = await build({
  entryPoints: [here("./demo.ts")],
  bundle: true,
  format: "esm",
  platform: "browser",
  // The SDK's TypeScript sources (README: Development), so the demo needs no build.
  conditions: ["crier-source"],
  target: "es2022",
  write: false,
});
const script = bundle.outputFiles[0]?.contents ?? new Uint8Array();

// Errors only: the demo turns authentication off on purpose, and says so above.
const logger = pino({ level: "error" });
const crier = await CrierNode.create({
  config: {
    allowAnonymous: true,
    ...(values.redis === undefined ? {} : { redis: values.redis }),
    namespaces: { chat: { history: { size: 200, ttl: "1h" }, presence: true, joinLeave: true } },
  },
  logger,
});
const server = createServer((request, response) => {
  const path = (request.url ?? "/").split("?")[0];
  if (path === "/" || path === "/index.html") {
    response.writeHead(200, { "Content-Type": "text/html; charset=utf-8" }).end(page);
  } else if (path === "/demo.js") {
    response.writeHead(200, { "Content-Type": "text/javascript; charset=utf-8" }).end(script);
  } else {
    response.writeHead(404, { "Content-Type": "text/plain" }).end("not found");
  }
});
crier.attach(server);
server.listen(port, values.host, () => {
  const address = server.address();
  const bound = typeof address === "object" && address !== null ? address.port : port;
  process.stdout.write(`crier chat demo on http://${values.host}:${bound}/ (Ctrl-C stops it)\n`);
});

const stop = (): void => {
  server.close();
  crier.close().then(
    () => process.exit(0),
    (error: unknown) => {
      logger.error({ err: error }, "closing crier failed");
      process.exit(1);
    },
  );
};
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
