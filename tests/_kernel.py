"""A real Jupyter kernel for tests, driven by nbclient the way a notebook front-end drives one.

One kernel per test module (starting a kernel costs a second or two); each test appends cells to the
module's notebook and reads their outputs as a saved notebook would hold them.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
from jupyter_core.utils import run_sync
from nbclient import NotebookClient

__all__ = ["NotebookKernel", "nbflow_kernel", "widget_models", "stream", "error", "result", "plain", "ANSI", "WIDGET",
           "WIDGET_STATE"]

ANSI = re.compile(r"\x1b\[[0-9;]*m")
WIDGET = "application/vnd.jupyter.widget-view+json"
"""The MIME type of a widget in a cell's outputs."""
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
"""The key of the widgets' saved state in a notebook's metadata."""


class NotebookKernel:
    """An ipykernel with its own ``NBFLOW_HOME``, running cells of one growing notebook."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, timeout: float = 60) -> None:
        self.home = home
        self.nb = nbformat.v4.new_notebook()
        self.client = NotebookClient(
            self.nb, timeout=timeout, allow_errors=True, kernel_name="python3",
            resources={"metadata": {"path": str(home)}},
        )
        self._env = {**os.environ, "NBFLOW_HOME": str(home), **(env or {})}
        self._context: Any = None

    def __enter__(self) -> NotebookKernel:
        self._context = self.client.setup_kernel(env=self._env, cwd=str(self.home))
        self._context.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._context.__exit__(None, None, None)

    def run(self, source: str, *, interrupt_when: Path | None = None) -> Any:
        """Execute one cell; returns the cell, outputs included.

        ``interrupt_when``: interrupt the kernel (as the front-end's stop button does) once that file
        exists, i.e. once the cell's code got to the point that creates it.
        """
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        watcher = None
        if interrupt_when is not None:
            watcher = threading.Thread(target=self._interrupt_when, args=(interrupt_when,), daemon=True)
            watcher.start()
        self.client.execute_cell(cell, len(self.nb.cells) - 1)
        if watcher is not None:
            watcher.join(timeout=30)
        return cell

    def _interrupt_when(self, marker: Path) -> None:
        deadline = time.monotonic() + 30
        while not marker.exists():
            if time.monotonic() > deadline:
                return  # the cell's own assertions report what went wrong
            time.sleep(0.02)
        run_sync(self.client.km.interrupt_kernel)()

    def notebook_bytes(self) -> int:
        """Size of the notebook as it would be saved, outputs and widget state included."""
        self.client.set_widgets_metadata()  # what nbclient's execute() does when it finishes
        return len(nbformat.writes(self.nb).encode())


@contextmanager
def nbflow_kernel(home: Path, setup: str) -> Iterator[NotebookKernel]:
    """A kernel with ``%load_ext nbflow`` loaded and ``setup`` run: a test module's shared kernel.

    A setup cell that fails stops here, with its error, rather than as a NameError in every test."""
    with NotebookKernel(home) as kernel:
        cell = kernel.run("%load_ext nbflow\n" + setup)
        failed = error(cell)
        assert failed is None, f"the kernel's setup cell failed:\n{failed['traceback']}"
        yield kernel


def widget_models(kernel: NotebookKernel) -> dict[str, Any]:
    """The saved state of every widget model the notebook holds, by model id (as a saved notebook keeps it)."""
    return kernel.nb.metadata["widgets"][WIDGET_STATE]["state"]


def stream(cell: Any, name: str = "stderr") -> str:
    """All text the cell wrote to ``stdout`` or ``stderr``."""
    return "".join(o["text"] for o in cell.outputs if o["output_type"] == "stream" and o["name"] == name)


def error(cell: Any) -> dict[str, Any] | None:
    """The cell's error output (ename, evalue, traceback without colour codes), if it failed."""
    for o in cell.outputs:
        if o["output_type"] == "error":
            return {"ename": o["ename"], "evalue": o["evalue"], "traceback": ANSI.sub("", "\n".join(o["traceback"]))}
    return None


def result(cell: Any) -> str | None:
    """``text/plain`` of the cell's ``Out[n]``, if it has one."""
    for o in cell.outputs:
        if o["output_type"] == "execute_result":
            return o["data"].get("text/plain")
    return None


def plain(cell: Any, mime: str = "text/plain") -> list[str]:
    """``mime`` of every display output of the cell."""
    return [o["data"][mime] for o in cell.outputs if o["output_type"] == "display_data" and mime in o["data"]]
