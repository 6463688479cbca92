import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createLogger, prettyLine } from "./log.js";

/** An output that records what is written, as a terminal (isTTY) or a pipe. */
function output(isTTY: boolean): { write(text: string): boolean; isTTY: boolean; text: string[] } {
  const text: string[] = [];
  return { isTTY, text, write: (chunk: string) => text.push(chunk) > 0 };
}

describe("log format", () => {
  test("a terminal gets readable lines, a pipe gets JSON, unless logFormat says otherwise", () => {
    const cases = [
      { isTTY: true, logFormat: undefined, json: false },
      { isTTY: false, logFormat: undefined, json: true },
      { isTTY: true, logFormat: "json" as const, json: true },
      { isTTY: false, logFormat: "pretty" as const, json: false },
    ];
    for (const { isTTY, logFormat, json } of cases) {
      const out = output(isTTY);
      createLogger({ logLevel: "info", logFormat }, out).info({ port: 8080 }, "crier listening");
      const line = out.text.join("");
      assert.equal(line.startsWith("{"), json, `${JSON.stringify({ isTTY, logFormat })}: ${line}`);
      assert.match(line, json ? /"msg":"crier listening"/ : /INFO.* crier listening port=8080\n$/);
    }
  });

  test("the log level applies to either format", () => {
    const out = output(false);
    const logger = createLogger({ logLevel: "warn", logFormat: "pretty" }, out);
    logger.info("not shown");
    logger.warn("shown");
    assert.equal(out.text.length, 1);
    assert.match(out.text[0] ?? "", /WARN {2}shown/);
  });

  test("a pretty line: time, level, message, fields; strings with spaces quoted; an error's stack indented below", () => {
    const time = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
    const record = {
      level: 50,
      time,
      pid: 1,
      hostname: "h",
      node: "n1",
      msg: "shutdown failed",
      reason: "two words",
      rooms: ["a", "b"],
      err: { message: "boom", stack: "Error: boom\n    at x (y.js:1:1)" },
    };
    assert.equal(
      prettyLine(JSON.stringify(record)),
      '03:04:05.678 ERROR shutdown failed node=n1 reason="two words" rooms=["a","b"] err=boom\n' +
        "    Error: boom\n        at x (y.js:1:1)\n",
    );
    const colored = prettyLine(JSON.stringify({ level: 40, time, msg: "m" }), true);
    assert.equal(colored, "03:04:05.678 \u001b[33mWARN\u001b[0m  m\n");
    assert.equal(prettyLine("not json\n"), "not json\n");
  });
});
