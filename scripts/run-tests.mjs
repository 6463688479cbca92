#!/usr/bin/env node
// Runs every *.test.ts under packages/*/src, bench/ and test/ with node's test runner
// (through tsx), so the runner's closing summary is printed. Extra arguments
// are passed to node --test (e.g. --test-name-pattern=redis).
//
// The workspace packages resolve to their TypeScript sources through the
// "crier-source" export condition (README: Development), here and in every child
// process a test starts, through NODE_OPTIONS; the packaging test removes it to
// run the built packages as a user would.

import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

function find(dir, out) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === "node_modules" || entry.name.startsWith(".")) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) find(path, out);
    else if (entry.name.endsWith(".test.ts")) out.push(relative(root, path));
  }
  return out;
}

const files = [
  ...find(join(root, "packages"), []),
  ...find(join(root, "bench"), []),
  ...find(join(root, "test"), []),
].sort();
const filter = process.argv.slice(2).filter((arg) => !arg.startsWith("-"));
const flags = process.argv.slice(2).filter((arg) => arg.startsWith("-"));
const selected = filter.length === 0 ? files : files.filter((file) => filter.some((part) => file.includes(part)));
if (selected.length === 0) {
  console.error(`no test files match ${filter.join(" ")}`);
  process.exit(1);
}
const SOURCE_CONDITION = "--conditions=crier-source";
const nodeOptions = [process.env.NODE_OPTIONS, SOURCE_CONDITION].filter(Boolean).join(" ");
const result = spawnSync(
  process.execPath,
  ["--import", "tsx", "--test", "--test-concurrency=2", "--test-timeout=300000", ...flags, ...selected],
  { cwd: root, stdio: "inherit", env: { ...process.env, NODE_OPTIONS: nodeOptions } },
);
process.exit(result.status ?? 1);
