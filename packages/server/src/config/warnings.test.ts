import assert from "node:assert/strict";
import { test } from "node:test";
import { validateConfig } from "./load.js";
import { startupWarnings } from "./warnings.js";

test("the embedded default warns of anonymous connections and a generated API key", () => {
  const warnings = startupWarnings(validateConfig({}), true);
  assert.equal(warnings.length, 2);
  assert.match(warnings[0] ?? "", /anonymous connections are allowed/);
  assert.match(warnings[1] ?? "", /generated a random one/);
});

test("a configured key, tokens required and listed origins give no warning", () => {
  const config = validateConfig({ apiKey: "k".repeat(32), allowedOrigins: ["https://app.example.com"] });
  assert.deepEqual(startupWarnings(config, false), []);
});

test('allowedOrigins "*" is warned of, naming what to do instead', () => {
  const warnings = startupWarnings(validateConfig({ apiKey: "k".repeat(32), allowedOrigins: ["*"] }), false);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] ?? "", /list your origins instead/);
});
