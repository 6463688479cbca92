// Runs the real `crier` CLI as child processes, for tests of what a user sees
// from a shell and for multi-instance tests (ARCHITECTURE.md "Tests": real instances as
// separate processes, SIGKILL for crash tests). Output is captured line by line
// and awaited by event with deadlines; every child dies with the test process.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { track } from "./children.js";

export const TEST_API_KEY = "test-api-key-123";

/** The repository root: children run from here so `--import tsx` resolves. */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = "packages/server/src/cli.ts";

/** Per stream, the captured text keeps only its tail: enough to explain a failure, bounded however chatty. */
const MAX_CAPTURE_CHARS = 2_000_000;
const MAX_LINES = 50_000;
const FAILURE_TAIL_CHARS = 6000;

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export type Stream = "stdout" | "stderr";
export type LineMatch = string | RegExp | ((line: string) => boolean);

/**
 * The child's environment: this process's, without CRIER_* settings (a developer's
 * own CRIER_PORT must not leak into tests) and without the test runner's marker,
 * then `extra` (an undefined value removes a variable).
 */
function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("CRIER_") || key === "NODE_TEST_CONTEXT") continue;
    env[key] = value;
  }
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

function matches(match: LineMatch, line: string): boolean {
  if (typeof match === "string") return line.includes(match);
  if (match instanceof RegExp) return match.test(line);
  return match(line);
}

function describeMatch(match: LineMatch): string {
  if (typeof match === "string") return JSON.stringify(match);
  if (match instanceof RegExp) return String(match);
  return "a matching line";
}

/** Parses a pino JSON line; undefined for any other line. */
export function parseLogLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

// ---- one CLI child process -----------------------------------------------------

interface LineWaiter {
  stream: Stream | "any";
  match: LineMatch;
  resolve: (line: string) => void;
}

/** A `crier` other than the repository's sources, e.g. `npx crier` in a project that installed the package. */
export interface CliCommand {
  file: string;
  /** Arguments before crier's own (`serve …`). */
  args: readonly string[];
  cwd: string;
}

export interface SpawnCliOptions {
  /** Added to the child's environment (see childEnv); undefined removes a variable. */
  env?: Record<string, string | undefined>;
  /** Default: the repository's packages/server/src/cli.ts through tsx, from the repository's root. */
  command?: CliCommand;
}

/** A `crier …` child process whose stdout and stderr are captured and awaitable line by line. */
export class CliProcess {
  readonly process: ChildProcess;
  readonly args: readonly string[];
  private readonly exitPromise: Promise<ExitStatus>;
  private status: ExitStatus | undefined;
  private readonly text: Record<Stream, string> = { stdout: "", stderr: "" };
  private readonly partial: Record<Stream, string> = { stdout: "", stderr: "" };
  private readonly lines: Record<Stream, string[]> = { stdout: [], stderr: [] };
  private readonly waiters: LineWaiter[] = [];

  constructor(args: readonly string[], options: SpawnCliOptions = {}) {
    this.args = [...args];
    const command = options.command ?? { file: process.execPath, args: ["--import", "tsx", CLI], cwd: REPO_ROOT };
    const child = spawn(command.file, [...command.args, ...args], {
      cwd: command.cwd,
      env: childEnv(options.env),
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.process = child;
    track(child);
    // A child nobody waits for must not keep the test process alive (node's test
    // runner would hang after the last test): the exit hook kills it instead.
    // Waiting on it (exited, kill, stop, waitExit) holds the process again.
    child.unref();
    for (const stream of [child.stdout, child.stderr]) if (stream instanceof Socket) stream.unref();
    // The pipes are read until the end, or a full pipe would block the child.
    child.stdout?.on("data", (chunk: Buffer) => this.receive("stdout", chunk.toString("utf8")));
    child.stderr?.on("data", (chunk: Buffer) => this.receive("stderr", chunk.toString("utf8")));
    this.exitPromise = new Promise((resolve) => {
      const done = (status: ExitStatus): void => {
        if (this.status !== undefined) return;
        // A last line without a newline still counts as a line.
        for (const stream of ["stdout", "stderr"] as const) {
          if (this.partial[stream] !== "") this.line(stream, this.partial[stream]);
          this.partial[stream] = "";
        }
        this.status = status;
        resolve(status);
      };
      // 'close' rather than 'exit': by then every byte of output has been read.
      child.once("close", (code, signal) => done({ code, signal }));
      child.once("error", (error) => {
        this.receive("stderr", `[test support] cannot run crier: ${error.message}\n`);
        if (child.pid === undefined) done({ code: null, signal: null });
      });
    });
  }

  /** Resolves when the process has exited and its output is fully read. */
  get exited(): Promise<ExitStatus> {
    this.keepAlive();
    return this.exitPromise;
  }

  /** Makes the test process wait for this child again (see the constructor). */
  private keepAlive(): void {
    this.process.ref();
    for (const stream of [this.process.stdout, this.process.stderr]) if (stream instanceof Socket) stream.ref();
  }

  private receive(stream: Stream, chunk: string): void {
    this.text[stream] = (this.text[stream] + chunk).slice(-MAX_CAPTURE_CHARS);
    const pieces = (this.partial[stream] + chunk).split("\n");
    this.partial[stream] = pieces.pop() ?? "";
    for (const piece of pieces) this.line(stream, piece);
  }

  private line(stream: Stream, text: string): void {
    const line = text.endsWith("\r") ? text.slice(0, -1) : text;
    const lines = this.lines[stream];
    lines.push(line);
    if (lines.length > MAX_LINES) lines.splice(0, lines.length - MAX_LINES);
    for (let i = 0; i < this.waiters.length; i++) {
      const waiter = this.waiters[i];
      if (waiter === undefined) continue;
      if ((waiter.stream === "any" || waiter.stream === stream) && matches(waiter.match, line)) {
        this.waiters.splice(i, 1);
        i--;
        waiter.resolve(line);
      }
    }
  }

  /** Whether the process has exited. */
  get hasExited(): boolean {
    return this.status !== undefined || this.process.exitCode !== null || this.process.signalCode !== null;
  }

  stdout(): string {
    return this.text.stdout;
  }

  stderr(): string {
    return this.text.stderr;
  }

  /** Both streams, labelled, for failure messages. */
  output(): string {
    return `--- stdout of crier ${this.args.join(" ")}\n${this.text.stdout}\n--- stderr\n${this.text.stderr}`;
  }

  /** Complete lines received so far on `stream` (the last 50,000). */
  linesOf(stream: Stream): readonly string[] {
    return this.lines[stream];
  }

  /**
   * Resolves with the first line (already received or still to come) that
   * matches; rejects with the captured output when the process exits first or
   * the deadline passes.
   */
  waitForLine(
    match: LineMatch,
    options: { stream?: Stream | "any"; timeoutMs?: number; what?: string } = {},
  ): Promise<string> {
    const stream = options.stream ?? "any";
    const timeoutMs = options.timeoutMs ?? 10_000;
    const streams: Stream[] = stream === "any" ? ["stdout", "stderr"] : [stream];
    for (const name of streams) {
      const found = this.lines[name].find((line) => matches(match, line));
      if (found !== undefined) return Promise.resolve(found);
    }
    const what = `${options.what ?? describeMatch(match)} on ${stream === "any" ? "stdout or stderr" : stream}`;
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (error: Error | undefined, line = ""): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const index = this.waiters.indexOf(waiter);
        if (index !== -1) this.waiters.splice(index, 1);
        if (error) reject(error);
        else resolve(line);
      };
      const waiter: LineWaiter = { stream, match, resolve: (line) => finish(undefined, line) };
      this.waiters.push(waiter);
      const timer = setTimeout(
        () => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.tail()}`)),
        timeoutMs,
      );
      this.exitPromise.then((status) =>
        finish(new Error(`crier exited (${status.signal ?? status.code}) before printing ${what}\n${this.tail()}`)),
      );
    });
  }

  /** Waits for the exit, with a deadline after which the process is killed and the wait fails. */
  async waitExit(timeoutMs = 20_000): Promise<ExitStatus> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.process.kill("SIGKILL");
        reject(new Error(`crier ${this.args.join(" ")} did not exit within ${timeoutMs} ms\n${this.tail()}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.exited, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends `signal` (default SIGKILL) and resolves once the process has exited. Idempotent. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<ExitStatus> {
    if (!this.hasExited) this.process.kill(signal);
    return this.exited;
  }

  /** The end of the output, for failure messages. */
  tail(): string {
    return this.output().slice(-FAILURE_TAIL_CHARS);
  }
}

/** Starts `crier ARGS…` (e.g. ["sub", "room", "--url", url]) and returns at once. */
export function spawnCli(args: readonly string[], options: SpawnCliOptions = {}): CliProcess {
  return new CliProcess(args, options);
}

export interface CliResult extends ExitStatus {
  stdout: string;
  stderr: string;
}

/** Runs `crier ARGS…` to completion (killed and failed after `timeoutMs`). */
export async function runCli(
  args: readonly string[],
  options: SpawnCliOptions & { timeoutMs?: number } = {},
): Promise<CliResult> {
  const child = spawnCli(args, options);
  const status = await child.waitExit(options.timeoutMs ?? 20_000);
  return { ...status, stdout: child.stdout(), stderr: child.stderr() };
}

// ---- a crier instance ----------------------------------------------------------

export interface StartCrierOptions {
  /** Extra `serve` arguments, e.g. ["--redis", url, "--node-id", "a"]. */
  args?: readonly string[];
  /** Added to the child's environment; CRIER_* of the test process are never inherited. */
  env?: Record<string, string | undefined>;
  /**
   * Defaults `--port 0`, `--api-key test-api-key-123` and `--log-level info`. Each is
   * left out when `args` has that flag, when `env` sets its variable (CRIER_PORT,
   * CRIER_API_KEY, CRIER_LOG_LEVEL), or when the option here is null (e.g. apiKey:
   * null to see the generated key).
   */
  port?: number | null;
  apiKey?: string | null;
  logLevel?: "info" | "debug" | "trace" | null;
  /** How long to wait for "crier listening" (default 20 s). */
  readyTimeoutMs?: number;
  /** The `crier` to run (default: the repository's sources). */
  command?: CliCommand;
}

export interface CrierInstance {
  /** The port it listens on; restart() keeps it. */
  readonly port: number;
  /** ws://127.0.0.1:PORT/ws (the configured path). */
  readonly url: string;
  /** http://127.0.0.1:PORT */
  readonly httpUrl: string;
  /** The HTTP API key: the one passed, or the one it generated and printed (empty when set only in a config file). */
  readonly apiKey: string;
  /** The node id it logged. */
  readonly nodeId: string | undefined;
  /** The current child process (a new one after restart()). */
  readonly process: ChildProcess;
  /** The `serve` arguments it runs with. */
  readonly args: readonly string[];
  /** Resolves when the current child has exited. */
  readonly exited: Promise<ExitStatus>;
  /** Everything it printed, every run, both streams. */
  output(): string;
  /** Waits for a line of the current run (already printed or to come). */
  waitForOutput(match: LineMatch, timeoutMs?: number): Promise<string>;
  /** Waits for a pino log entry of the current run that satisfies `check`. */
  waitForLog(check: (entry: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Sends `signal` (default SIGKILL: a crash) and resolves once it has exited. */
  kill(signal?: NodeJS.Signals): Promise<ExitStatus>;
  /** SIGTERM, then waits for the exit (SIGKILL and failure after `timeoutMs`, default 10 s). Idempotent. */
  stop(timeoutMs?: number): Promise<ExitStatus>;
  /** Stops it (SIGTERM) if it still runs, then starts it again with the same arguments on the same port. */
  restart(): Promise<void>;
}

const QUIET_LEVELS = new Set(["warn", "error", "fatal", "silent"]);

function flagIndex(args: readonly string[], flag: string): number {
  return args.findIndex((arg) => arg === `--${flag}` || arg.startsWith(`--${flag}=`));
}

/** The value of `--flag V` or `--flag=V` in args. */
function flagValue(args: readonly string[], flag: string): string | undefined {
  const index = flagIndex(args, flag);
  const arg = args[index];
  if (arg === undefined) return undefined;
  return arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : args[index + 1];
}

function withoutFlag(args: readonly string[], flag: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    if (arg === `--${flag}`) i++;
    else if (!arg.startsWith(`--${flag}=`)) out.push(arg);
  }
  return out;
}

function hostForUrl(host: unknown): string {
  if (typeof host !== "string" || host === "" || host === "::" || host === "0.0.0.0") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}

class CrierProcess implements CrierInstance {
  port = 0;
  url = "";
  httpUrl = "";
  apiKey = "";
  nodeId: string | undefined;
  args: readonly string[];
  private child: CliProcess | undefined;
  private readonly spawnOptions: SpawnCliOptions;
  private readonly knownApiKey: string | undefined;
  private readonly readyTimeoutMs: number;
  private readonly previousOutput: string[] = [];

  constructor(
    args: readonly string[],
    spawnOptions: SpawnCliOptions,
    apiKey: string | undefined,
    readyTimeoutMs: number,
  ) {
    this.args = args;
    this.spawnOptions = spawnOptions;
    this.knownApiKey = apiKey;
    this.readyTimeoutMs = readyTimeoutMs;
  }

  private get current(): CliProcess {
    if (this.child === undefined) throw new Error("crier was not started");
    return this.child;
  }

  get process(): ChildProcess {
    return this.current.process;
  }

  get exited(): Promise<ExitStatus> {
    return this.current.exited;
  }

  output(): string {
    const runs = this.child === undefined ? this.previousOutput : [...this.previousOutput, this.child.output()];
    return runs.join("\n--- (restarted)\n");
  }

  waitForOutput(match: LineMatch, timeoutMs = 10_000): Promise<string> {
    return this.current.waitForLine(match, { timeoutMs });
  }

  async waitForLog(
    check: (entry: Record<string, unknown>) => boolean,
    timeoutMs = 10_000,
  ): Promise<Record<string, unknown>> {
    const line = await this.current.waitForLine(
      (text) => {
        const entry = parseLogLine(text);
        return entry !== undefined && check(entry);
      },
      { stream: "stdout", timeoutMs, what: "a matching log entry" },
    );
    return parseLogLine(line) ?? {};
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): Promise<ExitStatus> {
    return this.current.kill(signal);
  }

  async stop(timeoutMs = 10_000): Promise<ExitStatus> {
    const child = this.current;
    if (child.hasExited) return child.exited;
    child.process.kill("SIGTERM");
    return child.waitExit(timeoutMs);
  }

  async restart(): Promise<void> {
    await this.stop();
    // Port 0 picked a port at the first start: keep that one.
    this.args = [...withoutFlag(this.args, "port"), "--port", String(this.port)];
    await this.launch();
  }

  async launch(): Promise<void> {
    if (this.child !== undefined) this.previousOutput.push(this.child.output());
    const child = spawnCli(["serve", ...this.args], this.spawnOptions);
    this.child = child;
    try {
      await this.waitReady(child);
    } catch (error) {
      await child.kill("SIGKILL");
      throw error;
    }
  }

  private async waitReady(child: CliProcess): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    const line = await child.waitForLine((text) => parseLogLine(text)?.msg === "crier listening", {
      stream: "stdout",
      timeoutMs: this.readyTimeoutMs,
      what: 'the "crier listening" log line',
    });
    const entry = parseLogLine(line) ?? {};
    if (typeof entry.port !== "number") throw new Error(`"crier listening" without a port: ${line}\n${child.tail()}`);
    this.port = entry.port;
    const host = hostForUrl(entry.host);
    const path = typeof entry.path === "string" ? entry.path : "/ws";
    this.url = `ws://${host}:${this.port}${path}`;
    this.httpUrl = `http://${host}:${this.port}`;
    this.nodeId = typeof entry.node === "string" ? entry.node : undefined;
    if (this.knownApiKey !== undefined) {
      this.apiKey = this.knownApiKey;
      return;
    }
    // The server warned (before listening, on the same stream) that it generated a key:
    // it prints that key on stderr right after listening.
    const generated = child.linesOf("stdout").some((text) => {
      const msg = parseLogLine(text)?.msg;
      return typeof msg === "string" && msg.startsWith("no API key configured");
    });
    if (!generated) {
      this.apiKey = "";
      return;
    }
    const keyLine = await child.waitForLine(/HTTP API key for this run/, {
      stream: "stderr",
      timeoutMs: Math.max(1, deadline - Date.now()),
    });
    const key = /: (\S+)\s*$/.exec(keyLine)?.[1];
    if (key === undefined) throw new Error(`cannot read the generated API key from: ${keyLine}`);
    this.apiKey = key;
  }
}

/**
 * Starts `crier serve` as a child process and resolves once it logs "crier
 * listening" (failing with its output if it exits first or takes longer than
 * readyTimeoutMs).
 */
export interface ConfigFile {
  /** For `--config`. */
  readonly path: string;
  /** Deletes the file and its folder. Idempotent. */
  remove(): Promise<void>;
}

/** Writes `config` as crier.json in a fresh temporary folder, for `serve --config`. */
export async function writeConfig(config: Record<string, unknown>): Promise<ConfigFile> {
  const dir = await mkdtemp(join(tmpdir(), "crier-config-"));
  const path = join(dir, "crier.json");
  await writeFile(path, JSON.stringify(config));
  return { path, remove: () => rm(dir, { recursive: true, force: true }) };
}

export async function startCrier(options: StartCrierOptions = {}): Promise<CrierInstance> {
  const extra = options.args ?? [];
  const env = options.env ?? {};
  const args: string[] = [];
  const useDefault = (flag: string, variable: string, option: unknown): boolean =>
    option !== null && flagIndex(extra, flag) === -1 && env[variable] === undefined;
  if (useDefault("port", "CRIER_PORT", options.port)) args.push("--port", String(options.port ?? 0));
  if (useDefault("api-key", "CRIER_API_KEY", options.apiKey)) args.push("--api-key", options.apiKey ?? TEST_API_KEY);
  if (useDefault("log-level", "CRIER_LOG_LEVEL", options.logLevel))
    args.push("--log-level", options.logLevel ?? "info");
  args.push(...extra);

  const level = flagValue(args, "log-level") ?? env.CRIER_LOG_LEVEL ?? "info";
  if (QUIET_LEVELS.has(level)) {
    throw new Error(`startCrier needs log level info, debug or trace to see "crier listening" (got ${level})`);
  }
  const apiKey = flagValue(args, "api-key") ?? env.CRIER_API_KEY;
  const instance = new CrierProcess(args, { env, command: options.command }, apiKey, options.readyTimeoutMs ?? 20_000);
  await instance.launch();
  return instance;
}

// ---- the HTTP API ---------------------------------------------------------------

export interface ApiOptions {
  /** The key to send instead of the instance's; null sends no Authorization header. */
  apiKey?: string | null;
  /** Default: POST with a body, GET without. */
  method?: string;
}

/** Calls crier's HTTP API with `Authorization: Bearer KEY`; the body is parsed as JSON when it is JSON. */
export async function api(
  instance: Pick<CrierInstance, "httpUrl" | "apiKey">,
  path: string,
  body?: unknown,
  options: ApiOptions = {},
): Promise<{ status: number; body: unknown }> {
  const key = options.apiKey === undefined ? instance.apiKey : options.apiKey;
  const headers: Record<string, string> = {};
  if (key !== null) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`${instance.httpUrl}${path}`, {
    method: options.method ?? (body === undefined ? "GET" : "POST"),
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text === "" ? undefined : JSON.parse(text);
  } catch {
    // Not JSON (e.g. /metrics): keep the text.
  }
  return { status: response.status, body: parsed };
}

/** A counter or gauge from an instance's /metrics (0 when absent). */
export async function metric(instance: CrierInstance, name: string): Promise<number> {
  const text = await (await fetch(`${instance.httpUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}
