// The front-end of nbflow's RunMonitor (Python side: nbflow/jupyter/_widget.py), loaded by loader.ts.
//
// ``initialize`` runs once per widget model and keeps a Store fed with the kernel's messages, whether
// or not a view is on screen; ``render`` draws a view of that store (a notebook may show several).

import type { GraphvizLike } from "./graph";
import type { FrontEndMessage, KernelMessage, Palette, Snapshot } from "./protocol";
import { DEFAULT_PALETTE } from "./palette";
import { Store } from "./store";
import { MonitorView } from "./view";

interface ModelLike {
  get(name: string): any;
  on(name: string, cb: (...args: any[]) => void): void;
  off(name?: string | null, cb?: ((...args: any[]) => void) | null): void;
  send(content: FrontEndMessage): void;
}

const STORES_KEY = "__nbflowMonitorStores";
const GRAPHVIZ_KEY = "__nbflowGraphviz";

// The loader (loader.ts) imports this module once per page and version and hands it every monitor;
// what monitors share lives on globalThis all the same, so that pages with monitors of two nbflow
// versions (two kernels) keep one set of stores and one Graphviz.
const shared = globalThis as unknown as Record<string, any>;
const stores: Map<string, Store> = (shared[STORES_KEY] ??= new Map());

function storeFor(model: ModelLike): Store {
  const uid: string = model.get("_uid");
  let store = stores.get(uid);
  if (!store) {
    store = new Store();
    const snapshot = model.get("snapshot") as Snapshot | undefined;
    if (snapshot && snapshot.kind) store.applySnapshot(snapshot);
    stores.set(uid, store);
  }
  return store;
}

/** Graphviz's WASM build (about 800 kB of JS). The kernel pushes it once per kernel process with
 * its first monitor, as a custom message (never widget state: saved notebooks must not carry it). A
 * page that missed it asks once; until it arrives, graphs use the simple built-in layout. */
interface GraphvizShared {
  gv: GraphvizLike | null;
  loading: Promise<GraphvizLike | null> | null;
  requested: boolean;
  ready: Set<() => void>;
}
const gvShared: GraphvizShared = (shared[GRAPHVIZ_KEY] ??= { gv: null, loading: null, requested: false, ready: new Set() });

function receiveGraphviz(source: string): void {
  if (gvShared.gv || gvShared.loading || typeof source !== "string") return;
  gvShared.loading = (async () => {
    const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    try {
      const mod = await import(/* webpackIgnore: true */ url);
      const gv = (await mod.Graphviz.load()) as GraphvizLike;
      gvShared.gv = gv;
      for (const listener of gvShared.ready) listener();
      return gv;
    } catch (err) {
      console.warn("nbflow monitor: Graphviz did not load; using the simple layout", err);
      gvShared.loading = null;
      return null;
    } finally {
      URL.revokeObjectURL(url);
    }
  })();
}

async function graphvizFor(model: ModelLike): Promise<GraphvizLike | null> {
  if (gvShared.gv) return gvShared.gv;
  if (gvShared.loading) return gvShared.loading; // arriving: worth the wait of a moment
  if (!gvShared.requested) {
    gvShared.requested = true;
    model.send({ kind: "graphviz?" });
  }
  return null;
}

/** The static fallback (for nbconvert, GitHub, a reopened notebook) is not needed next to a live view. */
function hideStaticFallback(runId: string | undefined): void {
  if (!runId || document.getElementById(`nbflow-hide-${runId}`)) return;
  const style = document.createElement("style");
  style.id = `nbflow-hide-${runId}`;
  const sel = `[data-nbflow-static="${CSS.escape(runId)}"]`;
  style.textContent = `.jp-OutputArea-child:has(${sel}), .output_area:has(${sel}), ${sel} { display: none !important; }`;
  document.head.append(style);
}

export default {
  initialize({ model }: { model: ModelLike }) {
    const store = storeFor(model);
    const onMessage = (msg: KernelMessage) => {
      if (!msg || typeof msg !== "object" || !("kind" in msg)) return;
      if (msg.kind === "graphviz") receiveGraphviz(msg.source);
      else store.apply(msg);
    };
    const onSnapshot = () => {
      const snap = model.get("snapshot") as Snapshot;
      if (snap && snap.kind) store.applySnapshot(snap);
    };
    model.on("msg:custom", onMessage);
    model.on("change:snapshot", onSnapshot);
    return () => {
      model.off("msg:custom", onMessage);
      model.off("change:snapshot", onSnapshot);
      stores.delete(model.get("_uid")); // the widget was closed: its views are gone too
    };
  },

  render({ model, el }: { model: ModelLike; el: HTMLElement }) {
    const store = storeFor(model);
    hideStaticFallback(store.run?.id);
    const view = new MonitorView({
      store,
      palette: () => (model.get("palette") as Palette) ?? DEFAULT_PALETTE,
      graphviz: () => graphvizFor(model),
      onGraphvizReady: (listener: () => void) => {
        gvShared.ready.add(listener);
        return () => gvShared.ready.delete(listener);
      },
      requestDetail: (id: string) => model.send({ kind: "detail", id }),
    });
    el.append(view.root);
    return () => {
      view.dispose();
      view.root.remove();
    };
  },
};
