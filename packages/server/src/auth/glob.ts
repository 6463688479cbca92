// Room patterns of the JWT `rooms` and `publish` claims: `*` matches any run of
// characters (including none, and including `:`), `?` exactly one; everything
// else matches itself. Compiled patterns are cached because the same tokens'
// patterns are checked on every subscribe.

const cache = new Map<string, RegExp>();
const MAX_CACHE = 10_000;

function compile(pattern: string): RegExp {
  let regex = cache.get(pattern);
  if (regex === undefined) {
    const source = pattern
      .split("")
      .map((ch) => (ch === "*" ? ".*" : ch === "?" ? "." : ch.replace(/[\\^$.|+()[\]{}]/g, "\\$&")))
      .join("");
    regex = new RegExp(`^${source}$`);
    if (cache.size >= MAX_CACHE) cache.clear();
    cache.set(pattern, regex);
  }
  return regex;
}

export function matchesRoom(pattern: string, room: string): boolean {
  if (!pattern.includes("*") && !pattern.includes("?")) return pattern === room;
  return compile(pattern).test(room);
}

export function matchesAny(patterns: readonly string[] | undefined, room: string): boolean {
  return patterns?.some((pattern) => matchesRoom(pattern, room)) ?? false;
}
