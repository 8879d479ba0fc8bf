// Bundled alone into static/graphviz.js: the kernel sends it once per session (see _widget.py).
export { Graphviz } from "@hpcc-js/wasm-graphviz";
