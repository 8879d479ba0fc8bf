"""``flow.rerun()`` and ``nbflow flow-run rerun ID``: the same parameters, a new linked flow run,
unchanged tasks Cached, failed/edited/downstream tasks executed; in-process, after a kernel restart,
and from another process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from cache_support import REPO, CacheHarness, nbflow_cli, run_python
from test_cache_policies import run_cell

from nbflow import flow, task
from nbflow._app.reruns import find_flow_run
from nbflow.cache_policies import NO_CACHE
from nbflow.exceptions import NbflowError


@pytest.fixture
def h(tmp_path):
    with CacheHarness(tmp_path / "home", store_enabled=True) as harness:
        yield harness


def _flow_runs(h):
    return [r for r in h.recorder.runs("flow")]


def _finals(h, flow_run):
    return {r.task_name: r.state.name for r in h.recorder.runs("task") if r.flow_run_id == flow_run.id}


def test_rerun_reuses_every_unchanged_task_and_links_the_runs(h):
    calls = []

    @task
    def load(n):
        calls.append("load")
        return list(range(n))

    @task
    def clean(rows):
        calls.append("clean")
        return [r * 2 for r in rows]

    @task
    def report(rows):
        calls.append("report")
        return sum(rows)

    @flow
    def etl(n: int):
        return report(clean(load(n)))

    assert etl(4) == 12
    assert etl(4) == 12  # a normal run executes everything again: no task asked for caching
    assert calls == ["load", "clean", "report"] * 2
    calls.clear()
    assert etl.rerun() == 12
    assert calls == []
    first, _, rerun = _flow_runs(h)
    assert rerun.rerun_of == h.recorder.runs("flow")[1].id and rerun.parameters == {"n": 4}
    assert _finals(h, rerun) == {"load": "Cached", "clean": "Cached", "report": "Cached"}
    assert len(h.recorder.edges()) == 6  # the rerun's graph is recorded too


def test_rerun_executes_failed_tasks_and_what_depends_on_them(h):
    broken = {"clean": True}
    calls = []

    @task
    def load(n):
        calls.append("load")
        return list(range(n))

    @task
    def clean(rows):
        calls.append("clean")
        if broken["clean"]:
            raise ValueError("bad row")
        return [r for r in rows if r]

    @task
    def report(rows):
        calls.append("report")
        return len(rows)

    @flow
    def etl(n: int):
        return report(clean(load(n)))

    state = etl(3, return_state=True)
    assert state.is_failed()
    broken["clean"] = False  # the data source is fixed: rerun
    calls.clear()
    assert etl.rerun() == 2
    assert calls == ["clean", "report"]
    assert _finals(h, _flow_runs(h)[-1]) == {"load": "Cached", "clean": "Completed", "report": "Completed"}


def test_rerun_after_editing_a_task_in_a_notebook_cell(h):
    ns: dict = {"__name__": "__main__", "task": task, "flow": flow, "calls": []}
    run_cell("@task\ndef load(n):\n    calls.append('load')\n    return list(range(n))\n", ns)
    run_cell("@task\ndef clean(rows):\n    calls.append('clean')\n    return [r * 2 for r in rows]\n", ns)
    run_cell("@task\ndef total(rows):\n    calls.append('total')\n    return sum(rows)\n", ns)
    run_cell("@task\ndef count(n):\n    calls.append('count')\n    return n\n", ns)
    run_cell("@flow\ndef etl(n: int):\n    return total(clean(load(n))), count(n)\n", ns)
    assert ns["etl"](3) == (6, 3)

    # An edit that changes clean's output: clean and everything downstream of it run again.
    run_cell("@task\ndef clean(rows):\n    calls.append('clean')\n    return [r * 10 for r in rows]\n", ns)
    ns["calls"].clear()
    assert ns["etl"].rerun() == (30, 3)
    assert sorted(ns["calls"]) == ["clean", "total"]

    # An edit that keeps clean's output the same: clean runs, its consumer is Cached.
    run_cell("@task\ndef clean(rows):\n    calls.append('clean')\n    return [10 * r for r in rows]  # same\n", ns)
    ns["calls"].clear()
    assert ns["etl"].rerun() == (30, 3)
    assert ns["calls"] == ["clean"]
    assert _finals(h, _flow_runs(h)[-1]) == {"load": "Cached", "clean": "Completed", "total": "Cached", "count": "Cached"}


def test_rerun_picks_a_run_by_id_prefix_or_name_and_defaults_to_the_latest(h):
    seen = []

    @task
    def echo(x):
        seen.append(x)
        return x

    @flow
    def pipeline(x: str):
        return echo(x)

    pipeline("first")
    pipeline("second")
    first, second = _flow_runs(h)
    assert pipeline.rerun() == "second"
    assert pipeline.rerun(first.id) == "first"
    assert pipeline.rerun(first.id[:10]) == "first"
    assert pipeline.rerun(second.name) == "second"
    assert seen == ["first", "second"]  # every rerun was served from the cache


def test_tasks_opting_out_run_again_on_rerun(h):
    sent = []

    @task(cache_policy=NO_CACHE)
    def notify(msg):
        sent.append(msg)

    @task(persist_result=False)
    def fetch_secret():
        sent.append("secret")
        return "s3cr3t"

    @flow
    def pipeline():
        fetch_secret()
        notify("done")

    pipeline()
    pipeline.rerun()
    assert sent == ["secret", "done"] * 2


def test_rerun_errors_say_what_to_do(h):
    @flow
    def never_ran():
        return 1

    @flow
    def other():
        return 2

    with pytest.raises(NbflowError, match="has no recorded runs|nothing to rerun"):
        never_ran.rerun()
    other()
    other_run = _flow_runs(h)[-1]
    never_ran()
    with pytest.raises(NbflowError, match=r"is a run of flow 'other', not of 'never-ran'"):
        never_ran.rerun(other_run.id)
    with pytest.raises(NbflowError, match="nbflow flow-run ls"):
        never_ran.rerun("no-such-run")


# --- another process, and a kernel restart -------------------------------------------------------------

PROJECT = '''
import os
from nbflow import flow, task

def _mark(name):
    with open(os.environ["COUNTER_FILE"], "a") as f:
        f.write(name + "\\n")

@task
def load(n):
    _mark("load")
    return list(range(n))

@task
def total(rows):
    _mark("total")
    return sum(rows)

@flow
def etl(n: int):
    return total(load(n))
'''


@pytest.fixture
def project(tmp_path):
    (tmp_path / "etl_mod.py").write_text(PROJECT)
    counter = tmp_path / "counter.txt"
    counter.touch()
    return tmp_path, {"COUNTER_FILE": str(counter)}


def _latest(home, flow_name):
    """The latest recorded run of ``flow_name`` in another home folder (one written by a subprocess)."""
    from nbflow._app.wiring import build_runtime
    from nbflow._core.settings import Settings
    from nbflow._engine.runtime import use_runtime

    with use_runtime(build_runtime(Settings(home=str(home)), console=False)):
        return find_flow_run(None, flow_name)


def _marks(folder):
    return (folder / "counter.txt").read_text().split()


@pytest.mark.slow  # a CLI subprocess
def test_cli_rerun_from_another_process(project):
    folder, env = project
    run_python("from etl_mod import etl; etl(5)", folder / "home", env=env, cwd=folder)
    run_id = _latest(folder / "home", "etl").id
    result = nbflow_cli("flow-run", "rerun", run_id[:8], home=folder / "home", cwd=folder, env=env)
    assert result.returncode == 0, result.stderr
    assert "2 of 2 task runs Cached, 0 ran" in result.stdout
    assert "Finished in state Cached(type=COMPLETED)" in result.stderr  # the run's console log
    assert _marks(folder) == ["load", "total"]
    latest = _latest(folder / "home", "etl")
    assert latest.id != run_id


@pytest.mark.slow  # a CLI subprocess
def test_cli_rerun_of_a_flow_in_a_script(project):
    folder, env = project
    script = folder / "scripts" / "nightly.py"
    script.parent.mkdir()
    script.write_text(PROJECT.replace("def etl(", "def nightly(") + '\nif __name__ == "__main__":\n    nightly(3)\n')
    result = subprocess.run([sys.executable, str(script)], env={**os.environ, **env, "NBFLOW_HOME": str(folder / "home"),
                            "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    run = _latest(folder / "home", "nightly")
    assert run.flow_ref == f"{script}:nightly"
    rerun = nbflow_cli("flow-run", "rerun", run.name, home=folder / "home", cwd=tmp_cwd(folder), env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert "2 of 2 task runs Cached" in rerun.stdout
    assert _marks(folder) == ["load", "total"]  # the script's __main__ block did not run again


def tmp_cwd(folder):
    other = folder / "elsewhere"
    other.mkdir(exist_ok=True)
    return other  # the script is found by its recorded path, not the current folder


@pytest.mark.slow  # a CLI subprocess
def test_cli_rerun_of_a_notebook_flow_says_to_rerun_it_there(tmp_path):
    code = """
    from nbflow import flow, task
    @task
    def one():
        return 1
    @flow
    def typed_in_a_repl():
        return one()
    typed_in_a_repl()
    """
    run_python(code, tmp_path / "home")
    run_id = _latest(tmp_path / "home", "typed-in-a-repl").id
    result = nbflow_cli("flow-run", "rerun", run_id, home=tmp_path / "home")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.startswith("nbflow: error: Flow 'typed-in-a-repl' of run ")
    assert "in a notebook or an interactive session" in message
    assert f"%flow rerun {run_id[:8]}" in message and "typed_in_a_repl.rerun(" in message


@pytest.mark.slow  # a CLI subprocess
def test_cli_rerun_unknown_run_is_one_line(tmp_path):
    run_python("from nbflow import flow\n@flow\ndef f():\n    return 1\nf()\n", tmp_path / "home")
    result = nbflow_cli("flow-run", "rerun", "nope", home=tmp_path / "home")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


NOTEBOOK_CELL = '''
import os
from nbflow import flow, task

@task
def load(n):
    with open(os.environ["COUNTER_FILE"], "a") as f:
        f.write("load\\n")
    return list(range(n))

@flow
def nb_etl(n: int):
    return sum(load(n))
'''


@pytest.mark.slow  # two kernels
def test_rerun_after_a_kernel_restart(project):
    jupyter_client = pytest.importorskip("jupyter_client")
    from test_cache_processes import _execute

    folder, env = project
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel(env={**os.environ, **env, "NBFLOW_HOME": str(folder / "home"), "PYTHONPATH": str(REPO)},
                    cwd=str(folder))
    try:
        first = _execute(km, NOTEBOOK_CELL + "\nprint('STATE', nb_etl(4))")
        km.restart_kernel(now=False)
        second = _execute(km, NOTEBOOK_CELL + textwrap.dedent("""
            state = nb_etl.rerun(return_state=True)
            print('STATE', state.result(), state.name)
        """))
    finally:
        km.shutdown_kernel(now=True)
    assert first == "6" and second == "6 Completed"
    assert _marks(folder) == ["load"]  # the rerun after the restart took load from the cache


def test_async_flow_rerun(h):
    import asyncio

    calls = []

    @task
    async def fetch(x):
        calls.append(x)
        return x + 1

    @flow
    async def pipeline(x: int):
        return await fetch(x)

    assert asyncio.run(pipeline(1)) == 2
    assert asyncio.run(pipeline.rerun()) == 2
    assert calls == [1]
