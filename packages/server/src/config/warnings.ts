// What a valid configuration still deserves a warning for at start: defaults
// that are fine for trying crier out and risky in production.

import type { CrierConfig } from "./schema.js";

/** One line per risky default in `config`; `anonymous` is whether connections without a token are let in. */
export function startupWarnings(config: CrierConfig, anonymous: boolean): string[] {
  const warnings: string[] = [];
  if (config.allowedOrigins?.includes("*")) {
    warnings.push(
      'allowedOrigins has "*": pages of any site may open connections with their visitors\' cookies (list your origins instead)',
    );
  }
  if (anonymous) {
    warnings.push("no JWT key configured: anonymous connections are allowed (set jwt.secret to require tokens)");
  }
  if (config.apiKey === undefined) {
    warnings.push("no API key configured: generated a random one for this run (set apiKey or CRIER_API_KEY)");
  }
  return warnings;
}
