// Command-line mistakes: thrown as UsageError, printed with a pointer to
// --help, exit code 2.

export class UsageError extends Error {}

/** A non-negative number option; `fallback` when absent. */
export function numberOption(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0)
    throw new UsageError(`--${name} must be a non-negative number, not ${value}`);
  return parsed;
}
