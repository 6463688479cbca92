// The logger a node makes when it is given none: pino's JSON lines, or readable
// lines for a person at a terminal (logFormat "pretty"; by default when stdout
// is a TTY). The pretty form is a few lines here rather than pino-pretty, which
// would add a dozen packages and a worker thread for what is a formatting detail.

import { type DestinationStream, type Logger, pino } from "pino";
import type { CrierConfig } from "./config/schema.js";

export type LogFormat = "json" | "pretty";

interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
}

/** The format when none is configured: pretty for a terminal, JSON for anything that may be parsed. */
export function defaultLogFormat(output: Output): LogFormat {
  return output.isTTY === true ? "pretty" : "json";
}

export function createLogger(
  config: Pick<CrierConfig, "logLevel" | "logFormat">,
  output: Output = process.stdout,
): Logger {
  const format = config.logFormat ?? defaultLogFormat(output);
  const options = { level: config.logLevel };
  // pino's own stdout stream is asynchronous (sonic-boom), the cheap way for JSON.
  if (format === "json") return output === process.stdout ? pino(options) : pino(options, output);
  const colors = output.isTTY === true && process.env.NO_COLOR === undefined;
  const destination: DestinationStream = { write: (line: string) => output.write(prettyLine(line, colors)) };
  return pino(options, destination);
}

const LEVELS: Record<number, { label: string; color: string }> = {
  10: { label: "TRACE", color: "90" },
  20: { label: "DEBUG", color: "36" },
  30: { label: "INFO ", color: "32" },
  40: { label: "WARN ", color: "33" },
  50: { label: "ERROR", color: "31" },
  60: { label: "FATAL", color: "35" },
};

/** Fields every line has, shown in the line's head (time, level, message) or not at all. */
const HEAD_FIELDS = new Set(["time", "level", "msg", "pid", "hostname"]);

/** One pino JSON line as `12:00:00.123 INFO  message key=value …`, with an error's stack below it. */
export function prettyLine(line: string, colors = false): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const time = typeof record.time === "number" ? new Date(record.time).toISOString().slice(11, 23) : "";
  const level = LEVELS[typeof record.level === "number" ? record.level : 30] ?? { label: "LOG  ", color: "0" };
  const name = level.label.trimEnd();
  const label = colors ? `\u001b[${level.color}m${name}\u001b[0m${level.label.slice(name.length)}` : level.label;
  const fields: string[] = [];
  let stack = "";
  for (const [key, value] of Object.entries(record)) {
    if (HEAD_FIELDS.has(key)) continue;
    if (key === "err" && typeof value === "object" && value !== null) {
      const err = value as { message?: unknown; stack?: unknown };
      fields.push(`err=${formatValue(err.message)}`);
      if (typeof err.stack === "string") stack = `\n    ${err.stack.split("\n").join("\n    ")}`;
      continue;
    }
    fields.push(`${key}=${formatValue(value)}`);
  }
  const message = typeof record.msg === "string" ? record.msg : "";
  return `${[time, label, message, ...fields].filter((part) => part !== "").join(" ")}${stack}\n`;
}

function formatValue(value: unknown): string {
  if (typeof value === "string") return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value) ?? String(value);
}
