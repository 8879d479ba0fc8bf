// The ES module each RunMonitor carries as its anywidget `_esm` (bundled alone into static/loader.js).
//
// anywidget keeps a widget's `_esm` and `_css` in that widget's state, and a saved notebook keeps the
// state of every widget: the whole front-end (about 24 kB) once per monitor. So a monitor carries this
// loader instead, plus a reference to the kernel's one MonitorAssets widget (nbflow/jupyter/_assets.py),
// whose state holds monitor.js and monitor.css; a saved notebook keeps that widget once. The loader
// imports the front-end once per page and hands each monitor to it. It uses only the widget manager's
// `get_model`, part of anywidget's API for widgets that refer to other widgets.
//
// Where the assets cannot be had (a notebook saved by a tool that dropped them), the loader renders
// nothing: the static summary next to the widget is then what the reader sees.

interface Front {
  initialize?(props: { model: unknown }): unknown;
  render(props: { model: unknown; el: HTMLElement }): unknown;
}

interface ModelLike {
  get(name: string): any;
  widget_manager: { get_model(id: string): Promise<ModelLike> };
}

const MODULES_KEY = "__nbflowMonitorFronts";
const REF = "IPY_MODEL_";

const shared = globalThis as unknown as Record<string, any>;
const fronts: Map<string, Promise<Front>> = (shared[MODULES_KEY] ??= new Map());

async function assetsOf(model: ModelLike): Promise<ModelLike> {
  const ref = model.get("assets");
  if (typeof ref !== "string" || !ref.startsWith(REF)) throw new Error("this monitor names no front-end assets");
  const id = ref.slice(REF.length);
  // Models restored together register together, but a page may create them in any order: give the
  // assets a moment to be registered.
  for (let attempt = 0; ; attempt++) {
    try {
      return await model.widget_manager.get_model(id);
    } catch (err) {
      if (attempt >= 20) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

async function importText(source: string): Promise<any> {
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  try {
    return await import(/* webpackIgnore: true */ url);
  } finally {
    URL.revokeObjectURL(url);
  }
}

function addStyle(version: string, css: string): void {
  const id = `nbflow-monitor-css-${version}`;
  if (!css || document.getElementById(id)) return;
  const style = document.createElement("style");
  style.id = id;
  style.textContent = css;
  document.head.append(style);
}

/** The front-end of this monitor's assets, imported once per page and version. */
async function frontOf(model: ModelLike): Promise<Front> {
  const assets = await assetsOf(model);
  const version = String(assets.get("version"));
  let front = fronts.get(version);
  if (!front) {
    front = importText(assets.get("esm")).then((mod) => mod.default as Front);
    fronts.set(version, front);
    front.catch(() => fronts.delete(version)); // a later monitor may try again
  }
  addStyle(version, assets.get("css"));
  return front;
}

function unavailable(err: unknown): void {
  console.warn("nbflow monitor: its front-end is not available here; showing the saved summary", err);
}

export default {
  async initialize(props: { model: ModelLike }) {
    let front: Front;
    try {
      front = await frontOf(props.model);
    } catch (err) {
      unavailable(err);
      return;
    }
    return front.initialize?.(props);
  },

  async render(props: { model: ModelLike; el: HTMLElement }) {
    let front: Front;
    try {
      front = await frontOf(props.model);
    } catch {
      return; // said once by initialize
    }
    return front.render(props);
  },
};
