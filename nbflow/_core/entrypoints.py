"""Where a flow's function can be imported from: the ``flow_ref`` a run records, read by reruns and crash hooks."""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["SCRIPT_MARK", "flow_entrypoint", "importable"]


def flow_entrypoint(fn: Any) -> str:
    """Where ``fn`` (a flow's function) can be imported from by another process.

    ``"package.module:qualname"``; for a script run as ``python script.py``, ``"/abs/script.py:qualname"``;
    ``"__main__:qualname"`` for code typed in a notebook or REPL, which no other process can import.
    """
    module = getattr(fn, "__module__", None) or "__main__"
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "?")
    if module == "__main__":
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        code_file = getattr(getattr(fn, "__code__", None), "co_filename", None)
        if main_file and code_file and main_file.endswith(".py") and _same_path(main_file, code_file):
            return f"{os.path.abspath(main_file)}:{qualname}"
    script = getattr(sys.modules.get(module), SCRIPT_MARK, None)  # a script a rerun loaded by its path
    if script:
        return f"{script}:{qualname}"
    return f"{module}:{qualname}"


SCRIPT_MARK = "__nbflow_script__"
"""Set on a script's module that a rerun imported by path: its flows are recorded under that path
again, so a rerun of the rerun finds the script too."""


def _same_path(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def importable(ref: str | None) -> tuple[str, str] | None:
    """``(module, qualname)`` of a recorded flow that another process can import without running a script."""
    if not ref or ":" not in ref:
        return None
    module, _, qualname = ref.rpartition(":")
    # Notebooks, scripts (recorded by path) and closures: not importable without running someone's
    # script, so their crash hooks are skipped, silently.
    path_like = module.endswith(".py") or "/" in module or "\\" in module
    if not module or module == "__main__" or path_like or "<" in qualname:
        return None
    return module, qualname
