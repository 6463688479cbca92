// Builds the console into packages/server/dashboard/, which the server package
// ships and serves at GET /dashboard (the output is committed: no build step
// when crier runs). Hashed asset names, no inline script or style, so the
// page runs under the server's strict Content-Security-Policy.

import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/dashboard/",
  logLevel: "warn",
  build: {
    outDir: process.env.CRIER_DASHBOARD_OUT ?? fileURLToPath(new URL("../server/dashboard", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    // Its polyfill is an inline-free module but not needed by the browsers the target implies.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    reportCompressedSize: false,
  },
});
