// Start-up time of the crier CLI: the built package (what `npx crier` runs once
// installed from npm) against the TypeScript sources through tsx (`npm start` in
// a clone). It builds first, then times each command several times, alternating
// them so that load from elsewhere on the machine falls on both alike:
//
//   node --conditions=crier-source --import tsx bench/startup.ts [--runs 10] [--out docs/packages.md]
//
// `serve` is timed from spawn to its "crier listening" log line (then stopped
// with SIGTERM), `--version` from spawn to exit. --out replaces the section
// between the startup markers in FILE (appending it when there is none).

import { execFileSync, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { machineInfo } from "./machine.js";

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));

interface Command {
  label: string;
  file: string;
  args: string[];
  /** Measure to this stdout line (then SIGTERM), or to exit when undefined. */
  until?: RegExp;
}

const BUILT = ["packages/server/bin/crier.mjs"];
const SOURCES = ["--conditions=crier-source", "--import", "tsx", "packages/server/src/cli.ts"];
const SERVE = ["serve", "--host", "127.0.0.1", "--port", "0", "--api-key", "startup-time-key", "--log-format", "json"];
const LISTENING = /"msg":"crier listening"/;

const COMMANDS: Command[] = [
  {
    label: "`node packages/server/bin/crier.mjs serve` (built)",
    file: process.execPath,
    args: [...BUILT, ...SERVE],
    until: LISTENING,
  },
  {
    label: "`node --import tsx packages/server/src/cli.ts serve` (sources)",
    file: process.execPath,
    args: [...SOURCES, ...SERVE],
    until: LISTENING,
  },
  {
    label: "`node packages/server/bin/crier.mjs --version` (built)",
    file: process.execPath,
    args: [...BUILT, "--version"],
  },
  {
    label: "`node --import tsx packages/server/src/cli.ts --version` (sources)",
    file: process.execPath,
    args: [...SOURCES, "--version"],
  },
  {
    label: "`npx crier --version` (built, with npx's own start-up)",
    file: "npx",
    args: ["--no-install", "crier", "--version"],
  },
];

const BEGIN = "<!-- startup: written by bench/startup.ts, do not edit by hand -->";
const END = "<!-- /startup -->";

/** Milliseconds from spawn to the `until` line, or to exit. */
function timeOnce(command: Command): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const elapsed = (): number => Number(process.hrtime.bigint() - started) / 1e6;
    // The workspace's NODE_OPTIONS (the test runner's crier-source condition) would change what the built CLI loads.
    const env = { ...process.env, NODE_OPTIONS: "" };
    const child = spawn(command.file, command.args, { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    let measured: number | undefined;
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
      if (command.until !== undefined && measured === undefined && command.until.test(output)) {
        measured = elapsed();
        child.kill("SIGTERM");
      }
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    child.once("error", reject);
    child.once("close", (code) => {
      const time = command.until === undefined && code === 0 ? elapsed() : measured;
      if (time === undefined)
        reject(new Error(`${command.label} exited with ${code} before it was measured:\n${output}`));
      else resolve(time);
    });
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: "string", default: "10" }, out: { type: "string" } } });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 100)
    throw new Error(`--runs must be 1 to 100 (got ${values.runs})`);
  process.stderr.write("building (npm run build)…\n");
  execFileSync("npm", ["run", "build"], { cwd: REPO_ROOT, stdio: ["ignore", "ignore", "inherit"] });
  const times = COMMANDS.map((): number[] => []);
  for (let run = 0; run < runs; run++) {
    for (const [index, command] of COMMANDS.entries()) times[index]?.push(await timeOnce(command));
    process.stderr.write(`run ${run + 1}/${runs}\n`);
  }
  const machine = machineInfo();
  const invocation = ["node --conditions=crier-source --import tsx bench/startup.ts", ...process.argv.slice(2)].join(
    " ",
  );
  const lines = [
    BEGIN,
    `\`${invocation}\` on ${new Date().toISOString().slice(0, 16)}Z: ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node.js ${machine.node}; load average ${loadavg()[0]?.toFixed(1)} at the end (others share this machine); ${runs} runs of each, interleaved.`,
    "",
    "| command | until | median | fastest |",
    "|---|---|---:|---:|",
    ...COMMANDS.map((command, index) => {
      const samples = times[index] ?? [];
      const until = command.until === undefined ? "exit" : '"crier listening"';
      return `| ${command.label} | ${until} | ${median(samples).toFixed(0)} ms | ${Math.min(...samples).toFixed(0)} ms |`;
    }),
    END,
  ];
  const section = `${lines.join("\n")}\n`;
  process.stdout.write(section);
  if (values.out !== undefined) {
    let text = "";
    try {
      text = readFileSync(values.out, "utf8");
    } catch {
      // A new file.
    }
    const start = text.indexOf(BEGIN);
    const end = text.indexOf(END);
    text =
      start !== -1 && end > start
        ? `${text.slice(0, start)}${section.trimEnd()}${text.slice(end + END.length)}`
        : `${text}${text === "" || text.endsWith("\n") ? "" : "\n"}${section}`;
    writeFileSync(values.out, text);
    process.stderr.write(`wrote the section into ${values.out}\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench/startup.ts: ${(error as Error).message}\n`);
  process.exit(1);
});
