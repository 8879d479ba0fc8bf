// The front-end copy of a monitor's model: one per widget model, shared by all its views.

import type { Delta, Detail, DetailReply, Graph, LogEntry, NodeState, RunHeader, Snapshot, StateCounts } from "./protocol";
import { PROTOCOL } from "./protocol";

export const LOG_LIMIT = 500;

export type Change = "run" | "counts" | "graph" | "nodes" | "log" | "detail" | "sync";

type Listener = (changes: Set<Change>, info: { nodes: Set<string>; log: LogEntry[]; reset: boolean }) => void;

export class Store {
  seq = 0;
  /** Seconds to add to the browser's clock to get the kernel's. */
  skew = 0;
  final = false;
  /** A delta went missing (e.g. the page was reloaded mid-run): wait for the next keyframe. */
  stale = false;
  run: RunHeader | null = null;
  counts: StateCounts = {};
  graph: Graph = { v: 0, collapsed: false, nodes: [], edges: [] };
  nodes = new Map<string, NodeState>();
  log: LogEntry[] = [];
  skipped = 0;
  details = new Map<string, Detail>();
  private lastLogN = 0;
  private listeners = new Set<Listener>();

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Apply a message of the kernel about the run; returns false if it was ignored. */
  apply(msg: Snapshot | Delta | DetailReply): boolean {
    if (msg.kind === "detail") {
      if (msg.detail) this.details.set(msg.id, msg.detail);
      this.emit(new Set<Change>(["detail"]), new Set(), [], false);
      return true;
    }
    if (msg.kind === "snapshot") return this.applySnapshot(msg);
    return this.applyDelta(msg);
  }

  applySnapshot(snap: Snapshot): boolean {
    if (!snap || snap.protocol !== PROTOCOL) return false;
    if (snap.seq < this.seq && !snap.final) return false;
    if (this.final && !snap.final) return false;
    this.seq = snap.seq;
    this.skew = snap.now - Date.now() / 1000;
    this.final = snap.final;
    this.stale = false;
    this.run = snap.run;
    this.counts = snap.counts;
    const graphChanged = snap.graph.v !== this.graph.v || snap.graph.nodes.length !== this.graph.nodes.length;
    this.graph = snap.graph;
    this.nodes = new Map(Object.entries(snap.nodes));
    if (snap.details) for (const [id, d] of Object.entries(snap.details)) this.details.set(id, d);
    const fresh = this.mergeLog(snap.log, snap.skipped ?? 0);
    const changes = new Set<Change>(["run", "counts", "nodes", "sync"]);
    if (graphChanged) changes.add("graph");
    if (fresh.length) changes.add("log");
    this.emit(changes, new Set(this.nodes.keys()), fresh, true);
    return true;
  }

  applyDelta(delta: Delta): boolean {
    if (this.final || delta.seq <= this.seq) return false;
    if (delta.seq !== this.seq + 1) this.stale = true; // keep going: partial news beats none
    this.seq = delta.seq;
    this.skew = delta.now - Date.now() / 1000;
    const changes = new Set<Change>();
    const changed = new Set<string>();
    if (delta.run) {
      this.run = delta.run;
      changes.add("run");
    }
    if (delta.counts) {
      this.counts = delta.counts;
      changes.add("counts");
    }
    if (delta.graph) {
      this.graph = delta.graph;
      changes.add("graph");
    }
    if (delta.nodes) {
      for (const [id, state] of Object.entries(delta.nodes)) {
        this.nodes.set(id, state);
        changed.add(id);
      }
      changes.add("nodes");
    }
    let fresh: LogEntry[] = [];
    if (delta.log || delta.skipped) {
      fresh = this.mergeLog(delta.log ?? [], delta.skipped ?? 0);
      if (fresh.length) changes.add("log");
    }
    this.emit(changes, changed, fresh, false);
    return true;
  }

  /** Seconds since the run started (kernel clock), or its duration once it ended. */
  elapsed(): number | null {
    const run = this.run;
    if (!run || run.start == null) return null;
    const end = run.end ?? Date.now() / 1000 + this.skew;
    return Math.max(0, end - run.start);
  }

  private mergeLog(entries: LogEntry[], skipped: number): LogEntry[] {
    const fresh = entries.filter((e) => e[0] > this.lastLogN);
    if (!fresh.length) return fresh;
    this.lastLogN = fresh[fresh.length - 1][0];
    this.skipped += skipped;
    this.log.push(...fresh);
    if (this.log.length > LOG_LIMIT) this.log.splice(0, this.log.length - LOG_LIMIT);
    return fresh;
  }

  private emit(changes: Set<Change>, nodes: Set<string>, log: LogEntry[], reset: boolean): void {
    if (!changes.size) return;
    for (const listener of this.listeners) {
      try {
        listener(changes, { nodes, log, reset });
      } catch (err) {
        console.error("nbflow monitor:", err);
      }
    }
  }
}
