// A small Server-Sent Events reader on fetch, for platforms without EventSource
// (Node 20). It reads `data:` lines, joins an event's lines with "\n" as
// EventSource does, and never reconnects by itself: the client decides that.

/** Starts reading `url`; returns a function that stops. `ended` is called once, unless stopped first. */
export function readEventStream(
  url: string,
  event: (data: string) => void,
  ended: (reason: string) => void,
): () => void {
  const abort = new AbortController();
  let stopped = false;
  const end = (reason: string): void => {
    if (!stopped) ended(reason);
    stopped = true;
  };
  void (async () => {
    const response = await fetch(url, {
      headers: { Accept: "text/event-stream" },
      credentials: "include",
      signal: abort.signal,
    });
    const body = response.body;
    if (response.status !== 200 || body === null) {
      end(`GET ${new URL(url).pathname} answered ${response.status}`);
      return;
    }
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let data: string[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done || stopped) break;
      buffer += value;
      for (let newline = buffer.indexOf("\n"); newline !== -1; newline = buffer.indexOf("\n")) {
        const line = buffer.slice(0, newline).replace(/\r$/, "");
        buffer = buffer.slice(newline + 1);
        if (line === "") {
          if (data.length > 0 && !stopped) event(data.join("\n"));
          data = [];
        } else if (line.startsWith("data:")) {
          data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
        }
      }
    }
    end("the event stream ended");
  })().catch((error: unknown) =>
    end(`the event stream failed: ${error instanceof Error ? error.message : String(error)}`),
  );
  return () => {
    stopped = true;
    abort.abort();
  };
}
