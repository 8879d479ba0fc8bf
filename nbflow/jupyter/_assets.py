"""The monitor's front-end files, and how each reaches the browser without bloating saved notebooks.

anywidget keeps a widget's ``_esm`` and ``_css`` in that widget's state, and a notebook saved with
widget state (nbclient and ``nbconvert --execute`` always save it) keeps the state of every widget:
the whole front-end once per monitor. anywidget has no shared module yet (manzt/anywidget#613), so:

- ``static/loader.js`` (about 1 kB) is each monitor's ``_esm``: the one part saved per monitor;
- ``static/monitor.js`` and ``monitor.css`` (about 24 kB) travel once per kernel, in the state of one
  ``MonitorAssets`` widget that every monitor refers to (a widget reference, ``IPY_MODEL_<id>``);
  a saved notebook keeps it once, so a reopened one still renders its monitors;
- ``static/graphviz.js`` (about 800 kB) travels once per kernel as a custom message, never as widget
  state: without it the front-end lays graphs out with its own simple layered layout.

Imported with the widget (it imports ipywidgets); ``import nbflow`` never loads it.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from pathlib import Path

import ipywidgets
import traitlets

from nbflow._core.threads import renew_after_fork
from nbflow.exceptions import NbflowError

__all__ = ["STATIC", "MonitorAssets", "check_bundle", "graphviz_source", "loader_source", "shared_assets"]

STATIC = Path(__file__).parent / "static"

_BUNDLE = ("loader.js", "monitor.js", "monitor.css")
_BUNDLE_HELP = (
    "The monitor's front-end bundle is missing ({path}). From a source checkout build it with "
    "`cd extension && npm ci && npm run build` (needs Node.js), or install nbflow from a wheel."
)
_NOT_BUILT = "export default { render({ el }) { el.textContent = 'nbflow monitor: front-end not built'; } };"


def check_bundle() -> None:
    """Raise a clear error if the front-end was never built (a source checkout without Node.js)."""
    for name in _BUNDLE:
        if not (STATIC / name).exists():
            raise NbflowError(_BUNDLE_HELP.format(path=STATIC / name))


def loader_source() -> str:
    """The ``_esm`` of every monitor (see extension/src/loader.ts)."""
    path = STATIC / "loader.js"
    return path.read_text(encoding="utf-8") if path.exists() else _NOT_BUILT


@functools.lru_cache(maxsize=1)
def graphviz_source() -> str | None:
    """Graphviz compiled to WASM, as an ES module; None if the bundle was not built."""
    path = STATIC / "graphviz.js"
    return path.read_text(encoding="utf-8") if path.exists() else None


class MonitorAssets(ipywidgets.Widget):  # type: ignore[misc]
    """The monitor's front-end module and styles: one widget per kernel, referred to by every monitor.

    A model without a view (``@jupyter-widgets/base`` ``WidgetModel``): every front-end that shows
    widgets has it, and saves its state along with the monitors that refer to it.
    """

    version = traitlets.Unicode("").tag(sync=True)
    """A hash of the module and styles: a page imports each version once, however many monitors use it."""
    esm = traitlets.Unicode("").tag(sync=True)
    css = traitlets.Unicode("").tag(sync=True)


_shared: MonitorAssets | None = None
_lock = threading.Lock()
renew_after_fork(globals(), "_lock")  # a fork while another thread holds it


def shared_assets() -> MonitorAssets:
    """This kernel's ``MonitorAssets`` widget (made again if it was closed, e.g. by ``Widget.close_all()``)."""
    global _shared  # one per kernel process: that is the point of it
    with _lock:
        if _shared is None or _shared.comm is None:
            esm = (STATIC / "monitor.js").read_text(encoding="utf-8")
            css = (STATIC / "monitor.css").read_text(encoding="utf-8")
            version = hashlib.sha256(f"{esm}\0{css}".encode()).hexdigest()[:16]
            _shared = MonitorAssets(version=version, esm=esm, css=css)
        return _shared
