// Bundles the monitor's front-end into nbflow/jupyter/static/ (run: npm ci && npm run build).
// loader.js   - the anywidget ES module of every monitor (tiny: a saved notebook keeps one per monitor)
// monitor.js  - the monitor's front-end (sent once per kernel, in the MonitorAssets widget)
// monitor.css - its styles (likewise)
// graphviz.js - Graphviz compiled to WASM, as an ES module (large; sent once per kernel session)
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, "..", "nbflow", "jupyter", "static");
const common = { bundle: true, format: "esm", minify: true, target: "es2020", legalComments: "eof", logLevel: "info" };

await build({ ...common, entryPoints: [path.join(here, "src", "loader.ts")], outfile: path.join(out, "loader.js") });
await build({ ...common, entryPoints: [path.join(here, "src", "index.ts")], outfile: path.join(out, "monitor.js") });
await build({ ...common, entryPoints: [path.join(here, "src", "monitor.css")], outfile: path.join(out, "monitor.css") });
await build({ ...common, entryPoints: [path.join(here, "src", "graphviz-entry.ts")], outfile: path.join(out, "graphviz.js") });
