// The task graph: Graphviz (WASM) computes positions once per structure change; we draw the SVG
// ourselves, so a state change only recolours a node and never lays the graph out again.

import type { Graph, GraphNode, NodeState, Palette } from "./protocol";
import { colours, nodeLook, sortStates } from "./palette";

const SVG = "http://www.w3.org/2000/svg";
const FONT_PX = 11;
const CHAR_PX = 6.3;
const TASK_H = 26;
const GROUP_H = 38;
const MAX_LABEL = 32;

export interface GraphvizLike {
  layout(dot: string, format: "json", engine: "dot"): string;
}

interface Placed {
  id: string;
  x: number; // centre, SVG units (points)
  y: number;
  w: number;
  h: number;
}

interface Layout {
  width: number;
  height: number;
  nodes: Map<string, Placed>;
  edges: { from: string; to: string; d: string }[];
}

let uidCounter = 0;

export class GraphView {
  readonly el: HTMLDivElement;
  private uid = `nbf${Date.now().toString(36)}${(uidCounter++).toString(36)}`;
  private laidOut = -1;
  private busy = false;
  private again = false;
  private shapes = new Map<string, SVGGElement>();
  private graphNodes = new Map<string, GraphNode>();
  private selected: string | null = null;
  private disposed = false;

  constructor(
    private readonly graphviz: () => Promise<GraphvizLike | null>,
    private readonly getGraph: () => Graph,
    private readonly getState: (id: string) => NodeState | undefined,
    private readonly types: () => Record<string, string>,
    private readonly palette: () => Palette,
    private readonly onSelect: (id: string) => void,
  ) {
    this.el = document.createElement("div");
    this.el.className = "nbf-graph";
    this.el.addEventListener("click", (event) => {
      const g = (event.target as Element).closest?.("[data-node]");
      if (g) this.onSelect(g.getAttribute("data-node")!);
    });
  }

  dispose(): void {
    this.disposed = true;
  }

  /** The structure changed (or was never drawn): lay out again, at most one layout at a time. */
  relayout(force = false): void {
    if (force) this.laidOut = -1;
    if (this.getGraph().v === this.laidOut) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    // A frame's delay batches several structure messages that arrive together into one layout.
    requestAnimationFrame(() => {
      this.layoutNow()
        .catch((err) => console.error("nbflow monitor: graph layout failed", err))
        .finally(() => {
          this.busy = false;
          if (this.again && !this.disposed) {
            this.again = false;
            this.relayout();
          }
        });
    });
  }

  /** Recolour nodes whose state changed (ids not on the graph yet are drawn by the next layout). */
  paint(ids: Iterable<string>): void {
    for (const id of ids) this.paintNode(id);
  }

  select(id: string | null): void {
    if (this.selected) this.shapes.get(this.selected)?.classList.remove("nbf-selected");
    this.selected = id;
    if (id) this.shapes.get(id)?.classList.add("nbf-selected");
  }

  private async layoutNow(): Promise<void> {
    const graph = this.getGraph();
    if (this.disposed) return;
    const version = graph.v;
    if (!graph.nodes.length) {
      this.el.textContent = "";
      this.laidOut = version;
      return;
    }
    const gv = await this.graphviz();
    const layout = gv ? graphvizLayout(gv, graph) : layeredLayout(graph);
    if (this.disposed) return;
    this.draw(graph, layout);
    this.laidOut = version;
  }

  private draw(graph: Graph, layout: Layout): void {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${layout.width} ${layout.height}`);
    svg.setAttribute("width", String(layout.width));
    svg.setAttribute("height", String(layout.height));
    svg.setAttribute("class", "nbf-svg");
    svg.setAttribute("font-size", String(FONT_PX));
    const marker = `${this.uid}-arrow`;
    svg.innerHTML =
      `<defs><marker id="${marker}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" ` +
      `orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" class="nbf-arrow"/></marker></defs>`;
    const edges = el("g", { class: "nbf-edges" });
    for (const edge of layout.edges) {
      edges.appendChild(el("path", { d: edge.d, "marker-end": `url(#${marker})` }));
    }
    svg.appendChild(edges);
    const nodes = el("g", { class: "nbf-nodes" });
    this.shapes.clear();
    this.graphNodes.clear();
    for (const node of graph.nodes) {
      const placed = layout.nodes.get(node.id);
      if (!placed) continue;
      this.graphNodes.set(node.id, node);
      const g = el("g", { "data-node": node.id, class: `nbf-node nbf-kind-${node.kind}` }) as SVGGElement;
      const x = placed.x - placed.w / 2;
      const y = placed.y - placed.h / 2;
      g.appendChild(el("rect", { x, y, width: placed.w, height: placed.h, rx: node.kind === "flow" ? 2 : 6 }));
      if (node.kind === "flow") {
        // A subflow: drawn as a stacked card, so it reads as "a flow in here".
        g.insertBefore(el("rect", { x: x + 3, y: y - 3, width: placed.w, height: placed.h, rx: 2, class: "nbf-card" }), g.firstChild);
      }
      const text = el("text", { x: placed.x, y: node.kind === "task" ? placed.y + 4 : y + 15, "text-anchor": "middle" });
      text.textContent = truncate(node.label);
      g.appendChild(text);
      if (node.kind !== "task") {
        g.appendChild(el("g", { class: "nbf-bar", "data-x": x + 7, "data-y": y + placed.h - 12, "data-w": placed.w - 14 }));
      }
      g.appendChild(el("title", {}));
      nodes.appendChild(g);
      this.shapes.set(node.id, g);
    }
    svg.appendChild(nodes);
    this.el.replaceChildren(svg);
    for (const id of this.shapes.keys()) this.paintNode(id);
    if (this.selected) this.select(this.selected);
  }

  private paintNode(id: string): void {
    const g = this.shapes.get(id);
    const node = this.graphNodes.get(id);
    if (!g || !node) return;
    const state = this.getState(id);
    const types = this.types();
    const palette = this.palette();
    const [name, type] = nodeLook(state, types);
    const [fill, stroke] = colours(palette, name, type);
    const rect = g.querySelector(":scope > rect:not(.nbf-card)") as SVGRectElement;
    rect.setAttribute("fill", fill);
    rect.setAttribute("stroke", stroke);
    g.setAttribute("data-state", name);
    g.classList.toggle("nbf-active", type === "RUNNING");
    g.classList.toggle("nbf-cached", name === "Cached");
    g.classList.toggle("nbf-notready", name === "NotReady");
    const card = g.querySelector(":scope > rect.nbf-card");
    if (card) {
      card.setAttribute("fill", fill);
      card.setAttribute("stroke", stroke);
    }
    const counts = state?.c;
    let tip = `${node.label}: ${name}`;
    if (state?.err) tip += `\n${state.err}`;
    if (counts && node.kind !== "task") {
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      const text = g.querySelector("text")!;
      const done = Object.entries(counts)
        .filter(([n]) => isFinal(types[n] ?? knownType(n)))
        .reduce((a, [, v]) => a + v, 0);
      text.textContent = node.kind === "group" ? `${truncate(node.label, 22)} ×${total}` : truncate(node.label, 24);
      this.drawBar(g.querySelector(".nbf-bar") as SVGGElement, counts, total, palette, types);
      tip += `\n${done}/${total} finished` + sortStates(Object.keys(counts)).map((n) => `\n  ${n}: ${counts[n]}`).join("");
    }
    g.querySelector("title")!.textContent = tip;
  }

  private drawBar(bar: SVGGElement, counts: Record<string, number>, total: number, palette: Palette, types: Record<string, string>): void {
    const x0 = Number(bar.getAttribute("data-x"));
    const y = Number(bar.getAttribute("data-y"));
    const width = Number(bar.getAttribute("data-w"));
    bar.replaceChildren(el("rect", { x: x0, y, width, height: 5, rx: 2, class: "nbf-bar-bg" }));
    if (!total) return;
    let x = x0;
    for (const name of sortStates(Object.keys(counts))) {
      const n = counts[name];
      if (n <= 0) continue;
      const w = (width * n) / total;
      bar.appendChild(el("rect", { x, y, width: Math.max(w, 0.5), height: 5, fill: colours(palette, name, types[name] ?? knownType(name))[1] }));
      x += w;
    }
  }
}

function el(tag: string, attrs: Record<string, string | number>): SVGElement {
  const node = document.createElementNS(SVG, tag) as SVGElement;
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function truncate(label: string, max = MAX_LABEL): string {
  return label.length > max ? label.slice(0, max - 1) + "…" : label;
}

export function knownType(name: string): string {
  switch (name) {
    case "Completed":
    case "Cached":
      return "COMPLETED";
    case "Failed":
    case "TimedOut":
    case "NotReady":
      return "FAILED";
    case "Running":
    case "Retrying":
      return "RUNNING";
    case "Crashed":
      return "CRASHED";
    case "Cancelled":
      return "CANCELLED";
    case "Scheduled":
      return "SCHEDULED";
    default:
      return "PENDING";
  }
}

export function isFinal(type: string): boolean {
  return type === "COMPLETED" || type === "FAILED" || type === "CRASHED" || type === "CANCELLED";
}

function nodeSize(node: GraphNode): [number, number] {
  const chars = Math.min(node.label.length, MAX_LABEL) + (node.kind === "group" ? 7 : 0);
  const w = Math.max(70, Math.min(230, chars * CHAR_PX + 22));
  return [w, node.kind === "task" ? TASK_H : GROUP_H];
}

function dotId(i: number): string {
  return `n${i}`;
}

/** Positions and edge splines from Graphviz's ``dot`` (nodes are fixed-size boxes, so no text metrics). */
export function graphvizLayout(gv: GraphvizLike, graph: Graph): Layout {
  const index = new Map<string, number>();
  const lines = [
    "digraph G {",
    'graph [rankdir=LR, nodesep=0.12, ranksep=0.3, pad=0.08, splines=true];',
    'node [shape=box, fixedsize=true, label=""];',
  ];
  graph.nodes.forEach((node, i) => {
    index.set(node.id, i);
    const [w, h] = nodeSize(node);
    lines.push(`${dotId(i)} [width=${(w / 72).toFixed(3)}, height=${(h / 72).toFixed(3)}];`);
  });
  for (const [u, v] of graph.edges) {
    const a = index.get(u);
    const b = index.get(v);
    if (a !== undefined && b !== undefined) lines.push(`${dotId(a)} -> ${dotId(b)};`);
  }
  lines.push("}");
  const out = JSON.parse(gv.layout(lines.join("\n"), "json", "dot"));
  const [, , bw, bh] = String(out.bb).split(",").map(Number);
  const nodes = new Map<string, Placed>();
  const byGvid = new Map<number, string>();
  for (const obj of out.objects ?? []) {
    const i = Number(String(obj.name).slice(1));
    const node = graph.nodes[i];
    if (!node || !obj.pos) continue;
    const [x, y] = String(obj.pos).split(",").map(Number);
    nodes.set(node.id, { id: node.id, x, y, w: Number(obj.width) * 72, h: Number(obj.height) * 72 });
    byGvid.set(obj._gvid, node.id);
  }
  // Graphviz's y axis points up, and which way its rows come out depends on the graph. Turn the
  // picture so that the first node created is above the others of its column: reading order.
  const first = nodes.get(graph.nodes[0].id);
  const column = first ? [...nodes.values()].filter((p) => Math.abs(p.x - first.x) < 1) : [];
  const flip = !!first && column.length > 1 && first.y > column.reduce((a, p) => a + p.y, 0) / column.length;
  const Y = (y: number) => (flip ? bh - y : y);
  for (const placed of nodes.values()) placed.y = Y(placed.y);
  const edges = [];
  for (const edge of out.edges ?? []) {
    const from = byGvid.get(edge.tail);
    const to = byGvid.get(edge.head);
    if (!from || !to || !edge.pos) continue;
    edges.push({ from, to, d: splinePath(String(edge.pos), Y) });
  }
  return { width: bw, height: bh, nodes, edges };
}

/** ``e,x,y p0 p1 p2 p3 ...`` (a B-spline of cubic pieces) as an SVG path ending at the arrow tip. */
function splinePath(pos: string, Y: (y: number) => number): string {
  let end: [number, number] | null = null;
  const points: [number, number][] = [];
  for (const part of pos.trim().split(/\s+/)) {
    const fields = part.split(",");
    if (fields[0] === "e") end = [Number(fields[1]), Y(Number(fields[2]))];
    else if (fields[0] === "s") continue;
    else points.push([Number(fields[0]), Y(Number(fields[1]))]);
  }
  if (!points.length) return "";
  let d = `M${fmt(points[0])}`;
  for (let i = 1; i + 2 < points.length; i += 3) {
    d += `C${fmt(points[i])} ${fmt(points[i + 1])} ${fmt(points[i + 2])}`;
  }
  if (end) d += `L${fmt(end)}`;
  return d;
}

function fmt(p: [number, number]): string {
  return `${p[0].toFixed(1)},${p[1].toFixed(1)}`;
}

/** A plain layered layout, for when Graphviz cannot load: longest-path layers, straight edges. */
export function layeredLayout(graph: Graph): Layout {
  const layer = new Map<string, number>();
  const preds = new Map<string, string[]>();
  for (const [u, v] of graph.edges) (preds.get(v) ?? preds.set(v, []).get(v)!).push(u);
  const depth = (id: string, seen: Set<string>): number => {
    const known = layer.get(id);
    if (known !== undefined) return known;
    if (seen.has(id)) return 0;
    seen.add(id);
    const d = Math.max(-1, ...(preds.get(id) ?? []).map((p) => depth(p, seen))) + 1;
    layer.set(id, d);
    return d;
  };
  const columns: GraphNode[][] = [];
  for (const node of graph.nodes) (columns[depth(node.id, new Set())] ??= []).push(node);
  const nodes = new Map<string, Placed>();
  let x = 8;
  let height = 0;
  for (const column of columns) {
    if (!column) continue;
    const width = Math.max(...column.map((n) => nodeSize(n)[0]));
    let y = 8;
    for (const node of column) {
      const [w, h] = nodeSize(node);
      nodes.set(node.id, { id: node.id, x: x + width / 2, y: y + h / 2, w, h });
      y += h + 10;
    }
    height = Math.max(height, y);
    x += width + 36;
  }
  const edges = graph.edges
    .filter(([u, v]) => nodes.has(u) && nodes.has(v))
    .map(([u, v]) => {
      const a = nodes.get(u)!;
      const b = nodes.get(v)!;
      return { from: u, to: v, d: `M${a.x + a.w / 2},${a.y}L${b.x - b.w / 2},${b.y}` };
    });
  return { width: x, height: height + 4, nodes, edges };
}
