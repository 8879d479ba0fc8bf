"""nbflow without extras: a wheel of this checkout installed into a fresh venv with only its declared
dependencies (pydantic, diskcache) imports every public module, runs ``from nbflow import *`` and a
flow, and carries ``py.typed``; what needs an extra says which one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PUBLIC_MODULES = [
    "nbflow", "nbflow.flows", "nbflow.tasks", "nbflow.states", "nbflow.futures", "nbflow.task_runners",
    "nbflow.cache_policies", "nbflow.runs", "nbflow.cache", "nbflow.concurrency", "nbflow.concurrency.sync",
    "nbflow.concurrency.asyncio", "nbflow.concurrency.limits", "nbflow.exceptions",
    "nbflow.utilities.annotations", "nbflow.dask",
]
EXTRAS_ONLY = {"IPython", "ipywidgets", "anywidget", "traitlets", "dask", "distributed", "mkdocs"}

# Run inside the fresh venv: everything a base install promises, and the extras' clear errors.
PROBE = r"""
import importlib, json, os, sys
out = {"modules": {}}
for name in sys.argv[1].split(","):
    importlib.import_module(name)
    out["modules"][name] = True
namespace = {}
exec("from nbflow import *", namespace)
out["star"] = sorted(k for k in namespace if not k.startswith("__"))

import nbflow
from nbflow import flow, task

@task(cache_policy=nbflow.cache_policies.INPUTS, persist_result=True)
def double(x):
    return 2 * x

@flow
def pipeline(n: int):
    return sum(double.map(range(n)).result())

out["flow"] = pipeline(4)
out["runs"] = len(nbflow.runs.flow_runs())
try:
    nbflow.monitor("nope")
except ImportError as exc:
    out["monitor"] = str(exc)
try:
    from nbflow.dask import DaskTaskRunner
    with DaskTaskRunner():
        pass
except Exception as exc:
    out["dask"] = f"{type(exc).__name__}: {exc}"
out["loaded"] = sorted(sys.modules)
out["py.typed"] = os.path.exists(os.path.join(os.path.dirname(nbflow.__file__), "py.typed"))
out["file"] = nbflow.__file__
print(json.dumps(out))
"""


def _pip(python: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    # This interpreter's pip installs into the target venv (--python): the venvs need no pip of their own.
    command = [sys.executable, "-m", "pip", "--python", str(python), "--quiet", *args]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.mark.slow
def test_a_base_install_imports_everything_and_runs_a_flow(tmp_path):
    build, fresh, dist = tmp_path / "build", tmp_path / "fresh", tmp_path / "dist"
    venv.create(build, with_pip=False)
    venv.create(fresh, with_pip=False)
    build_python, python = build / "bin" / "python", fresh / "bin" / "python"
    # The wheel, built as `pip install .` builds it but without npm (the bundle is not under test here).
    env = {**os.environ, "NBFLOW_SKIP_JS_BUILD": "1"}
    env.pop("PYTHONPATH", None)
    _pip(build_python, "install", "hatchling>=1.21")
    _pip(build_python, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dist), str(ROOT), env=env)
    [wheel] = dist.glob("nbflow_lab-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"nbflow/py.typed", "nbflow/jupyter/protocol.json"} <= names
    # Installed with its declared dependencies only, resolved by pip: no extra.
    _pip(python, "install", str(wheel), env=env)

    home = tmp_path / "home"
    probe_env = {**env, "NBFLOW_HOME": str(home)}
    done = subprocess.run([str(python), "-c", PROBE, ",".join(PUBLIC_MODULES)], env=probe_env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])

    assert Path(out["file"]).is_relative_to(fresh), out["file"]  # the installed copy, not this checkout
    assert set(out["modules"]) == set(PUBLIC_MODULES)
    import nbflow

    assert out["star"] == sorted(n for n in nbflow.__all__ if not n.startswith("__"))
    assert out["flow"] == 12 and out["runs"] == 1
    assert "pip install 'nbflow-lab[jupyter]'" in out["monitor"]
    assert out["dask"] == "ConfigurationError: DaskTaskRunner needs Dask: pip install 'nbflow-lab[dask]'"
    assert not EXTRAS_ONLY & {m.split(".")[0] for m in out["loaded"]}
    assert out["py.typed"], "the wheel has no nbflow/py.typed: type checkers would ignore nbflow's hints"

    version = subprocess.run([str(fresh / "bin" / "nbflow"), "--version"], env=probe_env,
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("nbflow "), version.stderr
