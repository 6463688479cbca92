// The console's built files are committed under packages/server/dashboard/ (so
// crier serves them with no build step): rebuilding packages/dashboard must
// give exactly those files, or someone changed its source without rebuilding
// (npm run build:dashboard).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { REPO_ROOT } from "../support/crier.js";

const run = promisify(execFile);
const COMMITTED = join(REPO_ROOT, "packages", "server", "dashboard");

async function files(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const name of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!name.isFile()) continue;
    const path = join(name.parentPath, name.name);
    out.set(path.slice(dir.length + 1), await readFile(path));
  }
  return out;
}

test("rebuilding the console gives exactly the committed files", async () => {
  const out = await mkdtemp(join(tmpdir(), "crier-dashboard-build-"));
  try {
    await run(process.execPath, [join(REPO_ROOT, "node_modules", "vite", "bin", "vite.js"), "build"], {
      cwd: join(REPO_ROOT, "packages", "dashboard"),
      env: { ...process.env, CRIER_DASHBOARD_OUT: out },
    });
    const built = await files(out);
    const committed = await files(COMMITTED);
    assert.deepEqual([...committed.keys()].sort(), [...built.keys()].sort(), "run npm run build:dashboard and commit");
    for (const [name, body] of built) {
      assert.ok(committed.get(name)?.equals(body), `${name} differs: run npm run build:dashboard and commit`);
    }
    assert.ok(built.has("index.html"));
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
