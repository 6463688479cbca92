// `crier bench <scenario> [options]`: the load bench of the crier repository
// (bench/), for pointing at a deployment (--url) or running on this machine.
// It lives beside the packages, not in them, and needs the repository's dev
// dependencies: an installation without it gets told where to find it.

import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** bench/index.ts of the repository this package sits in (packages/server/src/cli/ or dist/cli/ → the root). */
const BENCH_ENTRY = new URL("../../../../bench/index.ts", import.meta.url);

export const benchHelp = `Usage: crier bench <scenario> [options]
       crier bench <scenario> --url ws://HOST:PORT/ws[,...] [--token JWT | --jwt-secret SECRET] [--api-key KEY]

Runs the load bench of the crier repository: against a crier deployment you run
(--url; scenarios chat, ticker, direct, idle), or on this machine against crier and
Socket.IO. 'crier bench --help' lists the scenarios and every option.`;

const MISSING = `crier bench: the bench is not part of this installation (no ${fileURLToPath(BENCH_ENTRY)}).
It ships with the crier repository, not the npm package: clone the repository,
run 'npm ci' there, then 'npm run bench -- ...' from it (or 'npx crier bench ...' after 'npm run build').`;

interface BenchModule {
  runBench(argv: string[], invokedAs: string): Promise<number>;
}

export async function bench(args: string[]): Promise<number> {
  if (!existsSync(fileURLToPath(BENCH_ENTRY))) {
    if (args.includes("--help") || args.includes("-h")) process.stdout.write(`${benchHelp}\n\n`);
    process.stderr.write(`${MISSING}\n`);
    return 1;
  }
  let module: Partial<BenchModule>;
  try {
    // The built CLI (npx crier in a clone) loads the bench's TypeScript through the
    // repository's tsx, a dev dependency: the specifier is a variable so the build
    // does not depend on it. Run from the sources, tsx is loaded already.
    if (import.meta.url.endsWith(".js")) {
      const tsx = "tsx/esm/api";
      ((await import(tsx)) as { register(): unknown }).register();
    }
    module = (await import(BENCH_ENTRY.href)) as Partial<BenchModule>;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ERR_MODULE_NOT_FOUND") {
      process.stderr.write(
        `crier bench: the bench cannot load: ${(error as Error).message}\n` +
          "It needs the repository's dev dependencies: run 'npm ci' at the root of the crier repository.\n",
      );
      return 1;
    }
    throw error;
  }
  if (typeof module.runBench !== "function") {
    process.stderr.write(`crier bench: ${fileURLToPath(BENCH_ENTRY)} has no runBench: a bench from another version?\n`);
    return 1;
  }
  return module.runBench(args, "crier bench");
}
