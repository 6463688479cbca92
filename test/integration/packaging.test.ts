// The packages as a user gets them from npm: `npm pack` the three workspaces (each
// builds itself first, in prepack), install the tarballs into an empty project in
// the temporary directory, outside this repository (so neither its node_modules,
// tsx nor the sources are in reach), then run what the README promises there:
// `npx crier serve`, plain .mjs imports of every entry point, a strict nodenext
// TypeScript consumer, and a browser bundle of the SDK within its size budget.
// Dependencies come from the npm registry (--prefer-offline: the local cache first).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";
import { type CliCommand, type CrierInstance, REPO_ROOT, runCli, startCrier } from "../support/crier.js";
import { TestClient } from "../support/ws-client.js";

/** The SDK's browser entry, minified and gzipped at level 9, must stay within this. */
const SDK_BUDGET_BYTES = 6 * 1024;

const PACKAGES = ["packages/protocol", "packages/server", "packages/client"];
const FIXTURES = ["roundtrip.mjs", "consumer.ts", "tsconfig.json"];

interface Packed {
  name: string;
  version: string;
  filename: string;
  files: { path: string }[];
}

interface Manifest {
  name: string;
  version: string;
  exports: Record<string, Record<string, string>>;
  bin?: Record<string, string>;
  dependencies?: Record<string, string>;
  engines?: Record<string, string>;
  license?: string;
  repository?: unknown;
  sideEffects?: boolean;
}

/**
 * The environment of a user's shell: no npm_* variables of the `npm test` that runs
 * this file (npm_config_local_prefix would point npm back into the workspace), no
 * NODE_OPTIONS, which carries the workspace's crier-source condition, and no test
 * runner marker.
 */
function userEnv(): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { NODE_OPTIONS: undefined, NODE_TEST_CONTEXT: undefined };
  for (const key of Object.keys(process.env)) if (key.toLowerCase().startsWith("npm_")) env[key] = undefined;
  return env;
}

function fullEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [key, value] of Object.entries(userEnv())) if (value === undefined) delete env[key];
  return env;
}

/** Runs a command to completion; rejects with its output when it exits non-zero. */
function run(file: string, args: readonly string[], cwd: string): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd, env: fullEnv(), maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(" ")} failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

let dir = "";
let app = "";
const packed = new Map<string, Packed>();
const manifests = new Map<string, Manifest>();
const instances: CrierInstance[] = [];
/** The pid crier logged: npx runs it as a grandchild, which a signal to npx does not reach. */
const crierPids: number[] = [];

before(
  async () => {
    dir = await mkdtemp(join(tmpdir(), "crier-packaging-"));
    app = join(dir, "app");
    const workspaces = PACKAGES.flatMap((path) => ["--workspace", path]);
    const { stdout } = await run("npm", ["pack", ...workspaces, "--pack-destination", dir, "--json"], REPO_ROOT);
    for (const entry of JSON.parse(stdout.slice(stdout.indexOf("["))) as Packed[]) packed.set(entry.name, entry);
    for (const path of PACKAGES) {
      const manifest = JSON.parse(await readFile(join(REPO_ROOT, path, "package.json"), "utf8")) as Manifest;
      manifests.set(manifest.name, manifest);
    }
    await mkdir(app);
    await writeFile(join(app, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    for (const file of FIXTURES) await copyFile(join(REPO_ROOT, "test/packaging", file), join(app, file));
    // The consumer's own @types/node (the declarations of `crier` name node:http types),
    // at the repository's version, which the npm cache already holds.
    const types = JSON.parse(await readFile(join(REPO_ROOT, "node_modules/@types/node/package.json"), "utf8"));
    const tarballs = [...packed.values()].map((entry) => join(dir, entry.filename));
    await run(
      "npm",
      ["install", "--prefer-offline", "--no-audit", "--no-fund", ...tarballs, `@types/node@${types.version}`],
      app,
    );
  },
  { timeout: 600_000 },
);

after(async () => {
  await Promise.all(instances.map((instance) => instance.kill("SIGKILL")));
  for (const pid of crierPids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  if (dir !== "") await rm(dir, { recursive: true, force: true });
});

describe("the packed packages", () => {
  test("hold built JavaScript, declarations and source maps for every entry point, and no TypeScript source", () => {
    assert.deepEqual([...packed.keys()].sort(), ["crier", "crier-client", "crier-protocol"]);
    for (const [name, entry] of packed) {
      const files = new Set(entry.files.map((file) => file.path));
      const manifest = manifests.get(name);
      assert.ok(manifest !== undefined);
      for (const [subpath, conditions] of Object.entries(manifest.exports)) {
        for (const condition of ["types", "import"]) {
          const target = conditions[condition];
          assert.ok(target !== undefined, `${name} exports ${subpath} without "${condition}"`);
          assert.ok(files.has(target.replace(/^\.\//, "")), `${name}: ${target} (${subpath}) is not in the tarball`);
          if (condition === "import") assert.ok(files.has(`${target.replace(/^\.\//, "")}.map`), `${target}.map`);
        }
      }
      for (const path of files) {
        // dashboard/: the console's page, built from packages/dashboard and committed.
        assert.ok(
          /^(dist\/|bin\/|dashboard\/|package\.json$|README\.md$|LICENSE$)/.test(path),
          `${name} ships ${path}`,
        );
        assert.ok(!/(?<!\.d)\.ts$/.test(path), `${name} ships TypeScript source ${path}`);
        assert.ok(!/\.test\.|tsbuildinfo|\/testing\//.test(path), `${name} ships ${path}`);
      }
    }
  });

  test("share one version, pin each other to it, and carry what a registry needs", () => {
    const versions = new Set([...manifests.values()].map((manifest) => manifest.version));
    assert.equal(versions.size, 1, `one version for all three: ${[...versions].join(", ")}`);
    const [version] = versions;
    for (const manifest of manifests.values()) {
      for (const [dependency, range] of Object.entries(manifest.dependencies ?? {})) {
        if (manifests.has(dependency)) assert.equal(range, version, `${manifest.name} → ${dependency}`);
        assert.notEqual(dependency, "tsx", `${manifest.name} depends on tsx`);
      }
      assert.equal(manifest.license, "MIT");
      assert.ok(manifest.repository !== undefined, `${manifest.name} has no repository`);
      assert.equal(manifest.engines?.node, ">=20");
    }
    assert.equal(manifests.get("crier-client")?.sideEffects, false);
    assert.equal(manifests.get("crier-protocol")?.sideEffects, false);
  });
});

describe("installed from the tarballs", () => {
  const npx = (): CliCommand => ({ file: "npx", args: ["--no-install", "crier"], cwd: app });

  test("npx crier --version prints the version", async () => {
    const result = await runCli(["--version"], { command: npx(), env: userEnv() });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), manifests.get("crier")?.version);
  });

  test("npx crier serve serves the console, accepts a WebSocket client, delivers its publication, stops on SIGTERM", async () => {
    const crier = await startCrier({ command: npx(), env: userEnv() });
    instances.push(crier);
    const listening = crier.output().match(/"pid":(\d+)[^\n]*"msg":"crier listening"/);
    const pid = Number(listening?.[1]);
    assert.ok(pid > 0, crier.output());
    crierPids.push(pid);

    const dashboard = await fetch(`${crier.httpUrl}/dashboard`);
    assert.equal(dashboard.status, 200, "GET /dashboard: the console's files are in the package");
    assert.match(await dashboard.text(), /<html/i);

    const client = await TestClient.connect(crier.url);
    await client.call({ op: "subscribe", room: "lobby" });
    await client.call({ op: "publish", room: "lobby", data: { text: "installed" } });
    const message = await client.seen((frame) => frame.op === "message", "the publication");
    assert.deepEqual(message.op === "message" ? message.data : undefined, { text: "installed" });

    const closed = client.waitClosed();
    process.kill(pid, "SIGTERM");
    assert.equal((await closed).code, 4500, "clients are told the instance is shutting down");
    assert.equal((await crier.exited).code, 0, crier.output());
  });

  test("plain node imports every entry point; an attached crier delivers to the SDK through ws", async () => {
    const { stdout } = await run(process.execPath, ["roundtrip.mjs", "ws"], app);
    assert.match(stdout, /round trip over json with the ws package/);
    assert.match(stdout, /round trip over msgpack with the ws package/);
  });

  test("the SDK runs on the global WebSocket (Node 22+, or Node 20 with --experimental-websocket)", async () => {
    const major = Number(process.versions.node.split(".")[0]);
    const flags = major < 22 ? ["--experimental-websocket"] : [];
    const { stdout } = await run(process.execPath, [...flags, "roundtrip.mjs", "global"], app);
    assert.match(stdout, /round trip over json with the global WebSocket/);
    assert.match(stdout, /round trip over msgpack with the global WebSocket/);
  });

  test("a strict nodenext TypeScript consumer type-checks against the shipped declarations", async () => {
    const tsc = join(REPO_ROOT, "node_modules/typescript/bin/tsc");
    await run(process.execPath, [tsc, "-p", "tsconfig.json"], app);
  });

  test(`the SDK's browser entry bundles (esbuild, minified) within ${SDK_BUDGET_BYTES} bytes gzipped`, async (t) => {
    const sizes: Record<string, number> = {};
    for (const [entry, contents] of [
      ["crier-client", 'export * from "crier-client";'],
      ["crier-client/msgpack", 'export * from "crier-client"; export * from "crier-client/msgpack";'],
    ] as const) {
      const bundle = await build({
        stdin: { contents, resolveDir: app, sourcefile: "entry.js" },
        bundle: true,
        minify: true,
        format: "esm",
        platform: "browser",
        write: false,
      });
      const code = bundle.outputFiles[0]?.contents ?? new Uint8Array();
      sizes[entry] = gzipSync(code, { level: 9 }).length;
      t.diagnostic(`${entry}: ${code.length} bytes minified, ${sizes[entry]} bytes gzipped`);
    }
    const json = sizes["crier-client"] ?? Number.POSITIVE_INFINITY;
    assert.ok(json <= SDK_BUDGET_BYTES, `crier-client is ${json} bytes gzipped, over ${SDK_BUDGET_BYTES}`);
  });
});
