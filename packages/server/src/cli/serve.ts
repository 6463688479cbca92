// `crier serve`: loads configuration from --config, CRIER_* and flags, starts a
// node on its own HTTP server and stops it gracefully on SIGINT/SIGTERM.

import cluster from "node:cluster";
import { parseArgs } from "node:util";
import { ConfigError, loadConfig, SETTINGS, unknownEnvironment } from "../config/load.js";
import { CrierNode } from "../node.js";
import { runPrimary, WORKER_INDEX_ENV } from "./workers.js";

export function serveHelp(): string {
  const lines = SETTINGS.map(
    (s) =>
      `  --${`${s.flag}${s.kind === "boolean" && s.flagTakesValue !== true ? "" : " VALUE"}`.padEnd(26)} ${s.help} [${s.env}]`,
  );
  return [
    "Usage: crier serve [options]",
    "",
    "Starts a crier instance. Settings come from --config FILE (JSON or YAML), then",
    "CRIER_* environment variables, then these flags (flags win).",
    "",
    `  --${"config FILE".padEnd(26)} JSON or YAML configuration file [CRIER_CONFIG]`,
    ...lines,
    `  --${"help".padEnd(26)} show this help`,
  ].join("\n");
}

export async function serve(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const options: Record<string, { type: "string" | "boolean" }> = {
    config: { type: "string" },
    help: { type: "boolean" },
  };
  for (const setting of SETTINGS) {
    options[setting.flag] = {
      type: setting.kind === "boolean" && setting.flagTakesValue !== true ? "boolean" : "string",
    };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (error) {
    process.stderr.write(`crier serve: ${(error as Error).message}\nRun 'crier serve --help' for the options.\n`);
    return 2;
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help === true) {
    process.stdout.write(`${serveHelp()}\n`);
    return 0;
  }
  for (const name of unknownEnvironment(env)) {
    const settings = SETTINGS.map((setting) => setting.env).join(", ");
    process.stderr.write(
      `crier serve: ignoring unknown environment variable ${name}; known: ${settings}, CRIER_CONFIG\n`,
    );
  }
  let node: CrierNode;
  try {
    const file = typeof values.config === "string" ? values.config : undefined;
    let config = loadConfig({ file, env, flags: values });
    if (config.workers > 1 && cluster.isPrimary) return await runPrimary(config.workers, config.apiKey);
    const index = env[WORKER_INDEX_ENV];
    if (cluster.isWorker && index !== undefined && config.nodeId !== undefined) {
      // Each worker is an instance of its own: a configured node id gets the worker's index.
      config = loadConfig({ file, env, flags: { ...values, "node-id": `${config.nodeId}-w${index}` } });
    }
    node = await CrierNode.create({ config });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`crier serve: ${error.message}\n`);
      return 2;
    }
    process.stderr.write(`crier serve: cannot start: ${(error as Error).message}\n`);
    return 1;
  }
  try {
    await node.listen();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const where = `${node.config.host ?? "*"}:${node.config.port}`;
    const message =
      code === "EADDRINUSE"
        ? `port ${node.config.port} is already in use on ${node.config.host ?? "this machine"}: choose another with --port or CRIER_PORT`
        : `cannot listen on ${where}: ${(error as Error).message}`;
    process.stderr.write(`crier serve: ${message}\n`);
    await node.close();
    return 1;
  }
  if (node.apiKeyGenerated) {
    process.stderr.write(`crier: HTTP API key for this run (set CRIER_API_KEY to choose one): ${node.apiKey}\n`);
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        process.stderr.write(`crier: ${signal} again, exiting now\n`);
        resolve(1);
        return;
      }
      stopping = true;
      node.logger.info({ signal }, "shutting down");
      node.close().then(
        () => resolve(0),
        (error: unknown) => {
          node.logger.error({ err: error }, "shutdown failed");
          resolve(1);
        },
      );
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
