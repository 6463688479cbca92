// The deployment files of deploy/ against what they refer to. Docker cannot run
// on this project's machines, so nothing here builds an image: the compose file
// is parsed and its services, environment and nginx upstreams checked against
// each other; the Dockerfile's commands against the package scripts, workspaces,
// bin and files of this repository; deploy/nginx.conf against the configuration
// docs/deployment.md documents (which test/integration/nginx.test.ts runs in a
// real nginx); the systemd unit with `systemd-analyze verify` where it exists.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { parse } from "yaml";
import { SETTINGS } from "../../packages/server/src/config/load.js";
import { configSchema } from "../../packages/server/src/config/schema.js";
import { REPO_ROOT } from "../support/crier.js";
import { documentedConfig } from "../support/nginx.js";

const DEPLOY = join(REPO_ROOT, "deploy");

interface Service {
  build?: { context?: string; dockerfile?: string };
  image?: string;
  environment?: Record<string, string>;
  volumes?: string[];
  depends_on?: Record<string, { condition?: string }>;
  stop_grace_period?: string;
}

async function compose(): Promise<{ services: Record<string, Service> }> {
  // Merge keys (<<: *crier) as docker compose reads them.
  return parse(await readFile(join(DEPLOY, "compose.yaml"), "utf8"), { merge: true });
}

async function rootManifest(): Promise<{ scripts: Record<string, string>; workspaces: string[] }> {
  return JSON.parse(await readFile(join(REPO_ROOT, "package.json"), "utf8"));
}

/** The Dockerfile's instructions, continuation lines joined, comments dropped. */
async function dockerfile(): Promise<{ instruction: string; args: string }[]> {
  const text = (await readFile(join(DEPLOY, "Dockerfile"), "utf8")).replace(/\\\n/g, " ");
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const space = line.indexOf(" ");
      return { instruction: line.slice(0, space).toUpperCase(), args: line.slice(space + 1).trim() };
    });
}

const DEFAULT_PORT = configSchema.parse({}).port;

describe("deploy/compose.yaml", () => {
  test("Redis, two crier instances from deploy/Dockerfile sharing it and one API key, and nginx in front", async () => {
    const { services } = await compose();
    assert.ok(services.redis !== undefined, "a redis service");
    assert.ok(services.nginx !== undefined, "an nginx service");
    const instances = Object.entries(services).filter(([, service]) => service.build !== undefined);
    assert.deepEqual(
      instances.map(([name]) => name),
      ["crier-1", "crier-2"],
    );
    const ids = new Set<string>();
    for (const [name, service] of instances) {
      const dockerfile = join(DEPLOY, service.build?.context ?? ".", service.build?.dockerfile ?? "Dockerfile");
      assert.equal(dockerfile, join(DEPLOY, "Dockerfile"), `${name} builds deploy/Dockerfile`);
      const env = service.environment ?? {};
      assert.equal(env.CRIER_REDIS_URL, "redis://redis:6379", `${name} uses the redis service`);
      assert.match(env.CRIER_API_KEY ?? "", /^\$\{CRIER_API_KEY:\?/, `${name} requires the one CRIER_API_KEY`);
      for (const key of Object.keys(env)) {
        assert.ok(
          SETTINGS.some((setting) => setting.env === key),
          `${name}: ${key} is not a crier setting`,
        );
      }
      ids.add(env.CRIER_NODE_ID ?? "");
      assert.equal(service.depends_on?.redis?.condition, "service_healthy");
      assert.ok(service.stop_grace_period !== undefined, `${name} gives the graceful shutdown time`);
      assert.equal(services.nginx.depends_on?.[name]?.condition, "service_healthy", `nginx waits for ${name}`);
    }
    assert.equal(ids.size, instances.length, "each instance has its own node id");
  });

  test("nginx proxies to exactly those instances, with the configuration docs/deployment.md documents", async () => {
    const { services } = await compose();
    const mount = (services.nginx?.volumes ?? []).find((volume) => volume.includes("/etc/nginx/"));
    assert.ok(mount !== undefined, "nginx mounts a configuration");
    const [source] = mount.split(":");
    const conf = await readFile(join(DEPLOY, source ?? ""), "utf8");
    const upstreams = [...conf.matchAll(/^\s*server ([\w.-]+):(\d+);/gm)].map((match) => `${match[1]}:${match[2]}`);
    const names = Object.keys(services).filter((name) => services[name]?.build !== undefined);
    assert.deepEqual(
      upstreams,
      names.map((name) => `${name}:${DEFAULT_PORT}`),
    );
    // The rest is the documented configuration, line for line.
    const withoutUpstreams = (text: string): string =>
      text
        .split("\n")
        .filter((line) => !line.startsWith("#") && !/^\s*server [\w.-]+:\d+;/.test(line))
        .join("\n")
        .trim();
    assert.equal(withoutUpstreams(conf), withoutUpstreams(await documentedConfig()));
  });
});

describe("deploy/Dockerfile", () => {
  test("builds in one stage and runs in another, as a non-root user, with a HEALTHCHECK on /readyz", async () => {
    const lines = await dockerfile();
    const instructions = lines.map((line) => line.instruction);
    assert.ok(instructions.filter((instruction) => instruction === "FROM").length >= 2, "multi-stage");
    const last = lines.slice(instructions.lastIndexOf("FROM"));
    const user = last.filter((line) => line.instruction === "USER").pop();
    assert.ok(user !== undefined && !/^(root|0)(:|$)/.test(user.args), "the final stage runs as a non-root user");
    const healthcheck = last.find((line) => line.instruction === "HEALTHCHECK");
    assert.match(healthcheck?.args ?? "", /\/readyz/);
    assert.equal(last.find((line) => line.instruction === "STOPSIGNAL")?.args, "SIGTERM");
    assert.equal(last.find((line) => line.instruction === "EXPOSE")?.args, String(DEFAULT_PORT));
    assert.match(healthcheck?.args ?? "", new RegExp(`\\|\\| ${DEFAULT_PORT}\\b`), "the health check's default port");
  });

  test("its commands are this repository's: scripts, workspaces, files, the crier bin and its serve command", async () => {
    const lines = await dockerfile();
    const manifest = await rootManifest();
    const server = JSON.parse(await readFile(join(REPO_ROOT, "packages/server/package.json"), "utf8"));
    let checked = 0;
    for (const { instruction, args } of lines) {
      if (instruction === "COPY" && !args.startsWith("--from")) {
        const sources = args.split(/\s+/).slice(0, -1);
        for (const source of sources) assert.ok(existsSync(join(REPO_ROOT, source)), `COPY ${source}: no such file`);
        checked++;
      }
      if (instruction !== "RUN") continue;
      for (const match of args.matchAll(/npm run (\S+)/g)) {
        assert.ok(manifest.scripts[match[1] ?? ""] !== undefined, `npm run ${match[1]}: no such script`);
        checked++;
      }
      for (const match of args.matchAll(/--workspace (\S+)/g)) {
        assert.ok(manifest.workspaces.includes(match[1] ?? ""), `--workspace ${match[1]}: not a workspace`);
        const workspace = JSON.parse(await readFile(join(REPO_ROOT, match[1] ?? "", "package.json"), "utf8"));
        assert.ok(workspace.scripts?.prepack !== undefined, `${match[1]} builds itself when packed`);
        checked++;
      }
    }
    assert.ok(checked >= 5, "the Dockerfile copies the manifests and packs the workspaces");
    // npm ci needs every workspace's manifest that package-lock.json lists.
    const copied = lines.filter((line) => line.instruction === "COPY").map((line) => line.args);
    for (const workspace of manifest.workspaces) {
      assert.ok(
        copied.some((args) => args.startsWith(`${workspace}/package.json `)),
        `the Dockerfile copies ${workspace}/package.json before npm ci`,
      );
    }
    const cmd = lines.filter((line) => line.instruction === "CMD").pop();
    const argv = JSON.parse(cmd?.args ?? "[]") as string[];
    assert.equal(argv[0], Object.keys(server.bin)[0], "CMD runs the crier bin");
    assert.equal(argv[1], "serve");
    assert.ok(manifest.scripts.start?.endsWith("cli.ts serve"), "npm start runs the same command from the sources");
  });
});

describe("deploy/crier.service", () => {
  test("runs crier serve with flags crier knows, stops it with SIGTERM, and passes systemd-analyze verify", async () => {
    const unit = await readFile(join(DEPLOY, "crier.service"), "utf8");
    const exec = /^ExecStart=(.+)$/m.exec(unit)?.[1]?.split(/\s+/) ?? [];
    assert.deepEqual(exec.slice(0, 2), ["crier", "serve"]);
    for (const flag of exec.filter((arg) => arg.startsWith("--"))) {
      const name = flag.slice(2);
      assert.ok(name === "config" || SETTINGS.some((setting) => setting.flag === name), `unknown flag ${flag}`);
    }
    assert.match(unit, /^KillSignal=SIGTERM$/m);
    assert.match(unit, /^DynamicUser=yes$/m);

    const analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].find((path) => existsSync(path));
    if (analyze === undefined) return;
    // verify needs an executable that exists: the repository's bin stands in for the installed one.
    const dir = await mkdtemp(join(tmpdir(), "crier-unit-"));
    try {
      const copy = join(dir, "crier.service");
      await writeFile(copy, unit.replace(/^ExecStart=crier /m, `ExecStart=${REPO_ROOT}packages/server/bin/crier.mjs `));
      const stderr = await new Promise<string>((resolve) => {
        execFile(analyze, ["verify", copy], (_error, _stdout, output) => resolve(output));
      });
      const problems = stderr.split("\n").filter((line) => line.includes("crier.service"));
      assert.deepEqual(problems, [], stderr);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
