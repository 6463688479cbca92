// `npm run bench -- <scenario> [options]`: the bench (index.ts) as an npm script.

import { runBench } from "./index.js";

process.exit(await runBench(process.argv.slice(2), "npm run bench --"));
