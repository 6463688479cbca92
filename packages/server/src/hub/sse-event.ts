// A complete Server-Sent Events event (the HTML standard's text/event-stream):
// `data: <JSON frame>` and a blank line. Like a WebSocket frame (ws-frame.ts),
// one publication's event is the same bytes for every SSE recipient, so it is
// built once and written to each stream as is.

const PREFIX = Buffer.from("data: ");
const END = Buffer.from("\n\n");
const LF = 0x0a;
const CR = 0x0d;

/** The event around `json`, one JSON frame as UTF-8. */
export function sseEvent(json: Buffer): Buffer {
  // A line break would end the data line early. JSON the server encodes never
  // has one, but a payload's JSON text is forwarded as the publisher wrote it,
  // and JSON allows line breaks between tokens: such a frame goes out as one
  // data line per line, which the reader joins back with "\n" (still the same
  // JSON, as no raw line break can be inside a string).
  if (json.includes(LF) || json.includes(CR)) return multiline(json.toString("utf8"));
  return Buffer.concat([PREFIX, json, END], PREFIX.length + json.length + END.length);
}

/** The event around `text`, encoded as UTF-8 straight into the event. */
export function sseTextEvent(text: string): Buffer {
  return sseEvent(Buffer.from(text));
}

function multiline(text: string): Buffer {
  const lines = text.split(/\r\n|\r|\n/);
  return Buffer.from(`${lines.map((line) => `data: ${line}`).join("\n")}\n\n`);
}
