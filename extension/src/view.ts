// One rendered monitor: header, counts and progress, the graph, the detail panel and the state log.

import type { Detail, LogEntry, NodeState, Palette } from "./protocol";
import type { Change, Store } from "./store";
import { GraphView, type GraphvizLike, isFinal, knownType } from "./graph";
import { colours, nodeLook, sortStates } from "./palette";

export interface ViewHost {
  store: Store;
  palette: () => Palette;
  graphviz: () => Promise<GraphvizLike | null>;
  onGraphvizReady: (listener: () => void) => () => void;
  requestDetail: (id: string) => void;
}

const LOG_ROWS = 500;

export class MonitorView {
  readonly root: HTMLDivElement;
  private header: HTMLDivElement;
  private badge: HTMLSpanElement;
  private title: HTMLSpanElement;
  private elapsed: HTMLSpanElement;
  private note: HTMLSpanElement;
  private bar: HTMLDivElement;
  private chips: HTMLDivElement;
  private graph: GraphView;
  private side: HTMLDivElement;
  private logBox: HTMLDivElement;
  private logTitle: HTMLElement;
  private selected: string | null = null;
  private timer: number | undefined;
  private unsubscribe: () => void;
  private offGraphviz: () => void;

  constructor(private readonly host: ViewHost) {
    const store = host.store;
    this.root = div("nbf-monitor");
    this.header = div("nbf-header");
    this.badge = span("nbf-badge");
    this.title = span("nbf-title");
    this.elapsed = span("nbf-elapsed");
    this.note = span("nbf-note");
    this.header.append(this.badge, this.title, this.elapsed, this.note);
    this.bar = div("nbf-progress");
    this.chips = div("nbf-counts");
    const body = div("nbf-body");
    this.graph = new GraphView(
      host.graphviz,
      () => store.graph,
      (id) => store.nodes.get(id),
      () => this.types(),
      host.palette,
      (id) => this.select(id),
    );
    this.side = div("nbf-detail");
    this.side.hidden = true;
    body.append(this.graph.el, this.side);
    const details = document.createElement("details");
    details.className = "nbf-logwrap";
    details.open = true;
    this.logTitle = document.createElement("summary");
    this.logBox = div("nbf-log");
    this.logBox.addEventListener("click", (event) => {
      const target = (event.target as Element).closest?.("[data-run]");
      if (target) this.select(target.getAttribute("data-run")!);
    });
    details.append(this.logTitle, this.logBox);
    this.root.append(this.header, this.bar, this.chips, body, details);
    this.unsubscribe = store.subscribe((changes, info) => this.update(changes, info));
    this.update(new Set<Change>(["run", "counts", "graph", "nodes", "log", "sync"]), {
      nodes: new Set(store.nodes.keys()),
      log: store.log,
      reset: true,
    });
    this.timer = window.setInterval(() => this.tick(), 500);
    this.offGraphviz = host.onGraphvizReady(() => this.graph.relayout(true)); // the better layout arrived
  }

  dispose(): void {
    this.unsubscribe();
    this.offGraphviz();
    this.graph.dispose();
    window.clearInterval(this.timer);
  }

  private types(): Record<string, string> {
    const types: Record<string, string> = {};
    for (const [name, [type]] of Object.entries(this.host.store.counts)) types[name] = type;
    return types;
  }

  private update(changes: Set<Change>, info: { nodes: Set<string>; log: LogEntry[]; reset: boolean }): void {
    const store = this.host.store;
    if (changes.has("run") || changes.has("sync")) this.renderHeader();
    if (changes.has("counts")) this.renderCounts();
    if (changes.has("graph")) this.graph.relayout();
    else if (info.reset) this.graph.paint(store.nodes.keys());
    else if (changes.has("nodes")) this.graph.paint(info.nodes);
    if (changes.has("log")) this.renderLog(info.reset ? store.log : info.log, info.reset);
    if (this.selected && (changes.has("detail") || info.nodes.has(this.selected) || changes.has("sync"))) {
      this.renderDetail();
    }
  }

  private renderHeader(): void {
    const store = this.host.store;
    const run = store.run;
    if (!run) return;
    const [fill, stroke] = colours(this.host.palette(), run.state, run.type);
    this.badge.textContent = run.state;
    this.badge.style.background = fill;
    this.badge.style.borderColor = stroke;
    this.root.dataset.state = run.state;
    this.title.replaceChildren(bold(run.flow || "flow"), text(" · "), text(run.name || run.id.slice(0, 8)));
    this.title.title = `flow run ${run.id}` + (run.message ? `\n${run.message}` : "");
    this.note.textContent = store.stale ? "catching up…" : "";
    this.tick();
  }

  private tick(): void {
    const seconds = this.host.store.elapsed();
    this.elapsed.textContent = seconds == null ? "" : formatDuration(seconds);
    if (this.host.store.run?.end != null && this.timer !== undefined) {
      window.clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private renderCounts(): void {
    const store = this.host.store;
    const palette = this.host.palette();
    const entries = sortStates(Object.keys(store.counts));
    let total = 0;
    let done = 0;
    for (const name of entries) {
      const [type, n] = store.counts[name];
      total += n;
      if (isFinal(type)) done += n;
    }
    this.bar.replaceChildren();
    for (const name of entries) {
      const [type, n] = store.counts[name];
      const seg = div("nbf-seg");
      seg.style.flexGrow = String(n);
      seg.style.background = colours(palette, name, type)[1];
      seg.title = `${name}: ${n}`;
      this.bar.append(seg);
    }
    this.chips.replaceChildren();
    for (const name of entries) {
      const [type, n] = store.counts[name];
      const chip = span("nbf-chip");
      const dot = span("nbf-dot");
      dot.style.background = colours(palette, name, type)[1];
      chip.append(dot, text(`${name} ${n}`));
      chip.dataset.state = name;
      this.chips.append(chip);
    }
    const summary = span("nbf-total");
    summary.textContent = total ? `${done}/${total} tasks finished` : "no tasks yet";
    this.chips.append(summary);
  }

  private renderLog(entries: LogEntry[], reset: boolean): void {
    const store = this.host.store;
    const box = this.logBox;
    const stick = reset || box.scrollTop + box.clientHeight >= box.scrollHeight - 24;
    if (reset) box.replaceChildren();
    const fragment = document.createDocumentFragment();
    for (const entry of entries) fragment.append(logRow(entry, this.host.palette()));
    box.append(fragment);
    while (box.childElementCount > LOG_ROWS) box.firstElementChild!.remove();
    const skipped = store.skipped ? ` · ${store.skipped} lines skipped in bursts` : "";
    this.logTitle.textContent = `State log (${store.log.length} latest${skipped})`;
    if (stick) box.scrollTop = box.scrollHeight; // newest visible, unless the user scrolled up to read
  }

  private select(id: string): void {
    if (this.selected === id) {
      this.selected = null;
      this.graph.select(null);
      this.side.hidden = true;
      return;
    }
    this.selected = id;
    this.graph.select(id);
    this.side.hidden = false;
    if (!this.host.store.final || !this.host.store.details.has(id)) this.host.requestDetail(id);
    this.renderDetail();
  }

  private renderDetail(): void {
    const id = this.selected;
    if (!id) return;
    const store = this.host.store;
    const live: NodeState | undefined = store.nodes.get(id);
    const detail: Detail | undefined = store.details.get(id);
    const node = store.graph.nodes.find((n) => n.id === id);
    const side = this.side;
    side.replaceChildren();
    const close = document.createElement("button");
    close.className = "nbf-close";
    close.textContent = "×";
    close.title = "Close";
    close.onclick = () => this.select(id);
    const name = detail?.name ?? node?.label ?? logName(store.log, id) ?? id.slice(0, 8);
    const head = div("nbf-detail-head");
    head.append(bold(name), close);
    side.append(head);
    const [stateName, type] = live ? nodeLook(live, this.types()) : [detail?.state ?? "?", detail?.type ?? knownType(detail?.state ?? "")];
    const rows: [string, Node | string][] = [];
    const badge = span("nbf-badge");
    const [fill, stroke] = colours(this.host.palette(), stateName, type);
    badge.textContent = live?.s ?? detail?.state ?? stateName;
    badge.style.background = fill;
    badge.style.borderColor = stroke;
    rows.push(["State", badge]);
    if (detail?.task && detail.task !== name) rows.push(["Task", detail.task]);
    const start = live?.st ?? detail?.start ?? null;
    const end = live?.en ?? detail?.end ?? null;
    if (start != null) rows.push(["Duration", formatDuration((end ?? Date.now() / 1000 + store.skew) - start) + (end == null ? " (running)" : "")]);
    const attempts = live?.a ?? detail?.attempts;
    if (attempts) rows.push(["Attempts", String(attempts)]);
    const cacheKey = detail?.cache_key ?? live?.ck;
    const cache = detail?.cache ?? ((live?.s ?? detail?.state) === "Cached" ? "hit" : cacheKey ? "miss" : null);
    if (cache) rows.push(["Cache", `${cache === "hit" ? "hit ✓" : "miss"}${cacheKey ? ` · key ${cacheKey.slice(0, 16)}…` : ""}`]);
    const counts = detail?.counts ?? (node?.kind !== "task" ? live?.c : undefined);
    if (counts && Object.keys(counts).length) {
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      rows.push([node?.kind === "flow" || detail?.kind === "flow" ? "Its tasks" : "Runs", sortStates(Object.keys(counts)).map((n) => `${n} ${counts[n]}`).join(" · ") + ` (of ${total})`]);
    }
    const table = document.createElement("table");
    for (const [label, value] of rows) {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = label;
      const td = document.createElement("td");
      td.append(value);
      tr.append(th, td);
      table.append(tr);
    }
    side.append(table);
    const error = detail?.error ?? live?.err;
    if (error) side.append(section("Error", pre(error, "nbf-error")));
    if (detail?.traceback) side.append(section("Traceback", pre(detail.traceback, "nbf-traceback")));
    if (detail?.members?.length) {
      const list = div("nbf-members");
      for (const m of detail.members) {
        const row = div("nbf-member");
        row.dataset.run = m.id;
        const dot = span("nbf-dot");
        dot.style.background = colours(this.host.palette(), m.s, m.t)[1];
        row.append(dot, text(` ${m.name} · ${m.s}${m.d != null ? ` · ${formatDuration(m.d)}` : ""}${m.err ? ` · ${m.err}` : ""}`));
        row.onclick = () => this.select(m.id);
        list.append(row);
      }
      side.append(section(`Runs (${detail.members.length}${detail.total && detail.total > detail.members.length ? ` of ${detail.total}` : ""})`, list));
    }
    const logs = detail?.logs ?? store.log.filter((e) => e[2] === id && e[4] === "log").map((e) => [e[1], e[5], e[6]] as [number, number, string]);
    if (logs.length) {
      const box = div("nbf-detail-logs");
      for (const [t, level, message] of logs) box.append(logRow([0, t, id, "", "log", level, message], this.host.palette(), false));
      side.append(section("Logs", box));
    }
    if (!detail) side.append(div("nbf-muted", store.final ? "" : "Loading details… (a flow running in this cell answers when it finishes)"));
  }
}

function logRow(entry: LogEntry, palette: Palette, withName = true): HTMLDivElement {
  const [, t, runId, name, kind, level, message] = entry;
  const row = div(`nbf-logrow nbf-lvl-${level >= 40 ? "error" : level >= 30 ? "warn" : level < 20 ? "debug" : "info"}`);
  row.append(span("nbf-time", clock(t)));
  if (withName && name) {
    const who = span("nbf-who", name);
    who.dataset.run = runId;
    row.append(who);
  }
  if (kind === "state") {
    const stateName = message.replace(/^→ /, "").split(":")[0];
    const dot = span("nbf-dot");
    dot.style.background = colours(palette, stateName, knownType(stateName))[1];
    row.append(dot);
  }
  row.append(span("nbf-msg", message));
  return row;
}

function logName(log: LogEntry[], id: string): string | undefined {
  for (let i = log.length - 1; i >= 0; i--) if (log[i][2] === id) return log[i][3];
  return undefined;
}

export function formatDuration(seconds: number): string {
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m ${Math.floor(seconds % 60)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

function clock(t: number): string {
  const d = new Date(t * 1000);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function div(cls: string, content?: string): HTMLDivElement {
  const node = document.createElement("div");
  node.className = cls;
  if (content) node.textContent = content;
  return node;
}

function span(cls: string, content?: string): HTMLSpanElement {
  const node = document.createElement("span");
  node.className = cls;
  if (content) node.textContent = content;
  return node;
}

function bold(content: string): HTMLElement {
  const node = document.createElement("b");
  node.textContent = content;
  return node;
}

function text(content: string): Text {
  return document.createTextNode(content);
}

function pre(content: string, cls: string): HTMLPreElement {
  const node = document.createElement("pre");
  node.className = cls;
  node.textContent = content;
  return node;
}

function section(title: string, body: Node): HTMLDivElement {
  const node = div("nbf-section");
  node.append(div("nbf-section-title", title), body);
  return node;
}
