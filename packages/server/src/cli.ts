// The `crier` command: serve, sub, pub, bench.

import { readFileSync } from "node:fs";
import { bench, benchHelp } from "./cli/bench.js";
import { serve, serveHelp } from "./cli/serve.js";
import { tryCommand, tryHelp } from "./cli/try.js";

const USAGE = `Usage: crier <command> [options]

Commands:
  serve            start a crier instance (crier serve --help for its options)
  sub ROOM         print messages published to ROOM
  pub ROOM JSON    publish JSON to ROOM
  version          print crier's version (also --version)
  bench SCENARIO   load a deployment (--url) or this machine and report throughput and latency
                   (crier bench --help for the scenarios and options)

Run 'crier <command> --help' for a command's options.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  switch (command) {
    case "serve":
      return serve(args, process.env);
    case "sub":
    case "pub":
      return tryCommand(command, args, process.env);
    case "bench":
      return bench(args);
    case "version":
    case "--version":
    case "-v":
      process.stdout.write(`${version()}\n`);
      return 0;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(`${USAGE}\n\n${serveHelp()}\n\n${tryHelp}\n\n${benchHelp}\n`);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`crier: unknown command '${command}'\n${USAGE}\n`);
      return 2;
  }
}

/** The package's version: package.json is one directory up from src/cli.ts and from dist/cli.js alike. */
function version(): string {
  const manifest = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  return manifest.version;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Let pending writes (stdout, closing sockets) drain, then exit even if a
    // library left a handle open.
    setTimeout(() => process.exit(code), 100).unref();
  },
  (error: unknown) => {
    process.stderr.write(`crier: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
