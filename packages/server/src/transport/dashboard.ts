// GET /dashboard: the operator's console, static files built from
// packages/dashboard (Vite) into packages/server/dashboard/ and shipped with
// this package, so nothing is built when crier runs. They are read once, at
// first request, and served from memory. The page asks for the HTTP API key,
// keeps it in the tab's sessionStorage only and calls /api/ with it.
// `dashboard: false` in the configuration turns the page off.

import { readdirSync, readFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Where the built console lives: beside src/ (and beside dist/ once built), in the package. */
const BUILT = fileURLToPath(new URL("../../dashboard/", import.meta.url));

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

/**
 * Its own scripts and styles only (no inline code: Vite's output has none),
 * and requests to this origin only. uPlot styles its canvas through the
 * CSSOM, which style-src does not restrict.
 */
export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface File {
  type: string;
  body: Buffer;
}

export class DashboardFiles {
  private readonly dir: string;
  private files: Map<string, File> | undefined;

  constructor(dir = BUILT) {
    this.dir = dir;
  }

  /** Serves `path` when it is the console's; returns false otherwise. */
  serve(path: string, response: ServerResponse): boolean {
    if (path !== "/dashboard" && !path.startsWith("/dashboard/")) return false;
    const files = this.load();
    if (files === undefined) {
      response.writeHead(503, { "Content-Type": "text/plain; charset=utf-8" });
      response.end(`the dashboard is not built in ${this.dir}: run npm run build -w crier-dashboard\n`);
      return true;
    }
    const name = path === "/dashboard" || path === "/dashboard/" ? "index.html" : path.slice("/dashboard/".length);
    const file = files.get(name);
    if (file === undefined) {
      response.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" });
      response.end("not found\n");
      return true;
    }
    response.writeHead(200, {
      "Content-Type": file.type,
      "Content-Length": file.body.length,
      "Content-Security-Policy": DASHBOARD_CSP,
      "X-Content-Type-Options": "nosniff",
      // Asset names carry a hash of their content; the page itself must always be fresh.
      "Cache-Control": name === "index.html" ? "no-store" : "public, max-age=31536000, immutable",
    });
    response.end(file.body);
    return true;
  }

  private load(): Map<string, File> | undefined {
    if (this.files !== undefined) return this.files;
    let names: string[];
    try {
      names = readdirSync(this.dir, { recursive: true, encoding: "utf8" });
    } catch {
      return undefined;
    }
    const files = new Map<string, File>();
    for (const name of names) {
      const type = TYPES[extname(name)];
      if (type === undefined) continue;
      files.set(name.split("\\").join("/"), { type, body: readFileSync(join(this.dir, name)) });
    }
    if (!files.has("index.html")) return undefined;
    this.files = files;
    return files;
  }
}
