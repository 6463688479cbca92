import assert from "node:assert/strict";
import { test } from "node:test";
import { sseEvent, sseTextEvent } from "./sse-event.js";

/** What an EventSource hands over for one event: its data lines joined with "\n". */
function readData(event: Buffer): string {
  const text = event.toString("utf8");
  assert.ok(text.endsWith("\n\n"), "an event ends with a blank line");
  return text
    .slice(0, -2)
    .split("\n")
    .map((line) => {
      assert.ok(line.startsWith("data: "), `every line is a data line: ${JSON.stringify(line)}`);
      return line.slice("data: ".length);
    })
    .join("\n");
}

test("a JSON frame is one data line and a blank line", () => {
  const event = sseTextEvent('{"op":"ping"}');
  assert.equal(event.toString("utf8"), 'data: {"op":"ping"}\n\n');
});

test("JSON with line breaks between tokens becomes several data lines that read back as the same JSON", () => {
  const json = '{"op":"message",\r\n"room":"r","data":{\n"a": "x\\ny"\r}}';
  const event = sseEvent(Buffer.from(json));
  assert.deepEqual(JSON.parse(readData(event)), JSON.parse(json));
  assert.equal(event.toString("utf8").split("\n\n").length, 2, "still one event");
});

test("UTF-8 passes through unchanged", () => {
  const json = '{"op":"message","room":"r","data":"héllo ✓"}';
  assert.equal(readData(sseEvent(Buffer.from(json))), json);
});
