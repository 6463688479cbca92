// Values crier stored itself (presence entries, node heartbeats) come back as
// text that something else may have overwritten: parse without trusting it.

/** The JSON object in `text`; undefined when it is not valid JSON or not an object. */
export function parseJsonObject(text: string): Record<string, unknown> | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
}
