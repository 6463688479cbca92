#!/usr/bin/env node
// The `crier` command: the compiled CLI in dist/ (npm run build makes it; the
// published package ships it). From a clone, `npm run crier -- ...` runs the
// TypeScript sources instead and needs no build.
import { existsSync } from "node:fs";

const cli = new URL("../dist/cli.js", import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write(
    "crier: this copy of crier has not been built (no dist/cli.js).\n" +
      "In a clone of the crier repository, run 'npm run build' first, or 'npm run crier -- ...' to run the sources.\n",
  );
  process.exit(1);
}
await import(cli.href);
