// One way to turn a caught value into text for logs and error messages: a
// thrown value need not be an Error.

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
