// Durations in config: "500ms", "10s", "10m", "1h", "7d" or a bare number of seconds.

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds, or undefined when `text` is not a duration. */
export function parseDuration(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!match) return undefined;
  const amount = Number(match[1]);
  const unit = UNITS[match[2] ?? "s"];
  return unit === undefined ? undefined : amount * unit;
}
