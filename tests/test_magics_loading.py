"""Loading the extension: ``import nbflow`` stays free of IPython; ``%load_ext``/``%unload_ext`` are clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path


def _python(code: str, home: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, "NBFLOW_HOME": str(home)},
        capture_output=True, text=True, timeout=120, check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def test_importing_nbflow_loads_nothing_of_jupyter(tmp_path: Path) -> None:
    loaded = _python(
        """
        import sys
        import nbflow
        from nbflow import flow, task
        heavy = ("IPython", "ipykernel", "ipywidgets", "anywidget", "graphviz", "nbflow.jupyter")
        print(sorted(m for m in sys.modules if m.startswith(heavy)))
        """,
        tmp_path,
    )
    assert loaded == "[]"


def test_load_unload_and_reload_in_an_ipython_shell(tmp_path: Path) -> None:
    report = _python(
        """
        import json
        from IPython.core.interactiveshell import InteractiveShell

        shell = InteractiveShell.instance()
        magics = shell.magics_manager.magics
        seen = {}
        shell.run_cell("%load_ext nbflow")
        seen["loaded"] = ["flow" in magics["cell"], "flow" in magics["line"]]
        result = shell.run_cell("%%flow in-a-shell --no-monitor\\nanswer = 6 * 7\\nanswer")
        seen["result"] = [result.result, shell.user_ns["answer"]]
        shell.run_cell("%unload_ext nbflow")
        seen["unloaded"] = ["flow" in magics["cell"], "flow" in magics["line"],
                            sum(getattr(t, "nbflow", False) for t in shell.input_transformers_cleanup)]
        shell.run_cell("%load_ext nbflow")
        shell.run_cell("%reload_ext nbflow")
        seen["reloaded"] = sum(getattr(t, "nbflow", False) for t in shell.input_transformers_cleanup)
        print(json.dumps(seen))
        """,
        tmp_path,
    )
    assert json.loads(report) == {
        "loaded": [True, True], "result": [42, 42], "unloaded": [False, False, 0], "reloaded": 1,
    }
