"""The cache across processes: hits in a new process and after a kernel restart, a damaged database,
and two processes computing a locked key once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
from cache_support import REPO, run_python

pytestmark = pytest.mark.slow  # new processes and kernel restarts

PIPELINE = '''
import os
from nbflow import flow, task
from nbflow.cache_policies import DEFAULT

@task(cache_policy=DEFAULT)
def expensive(x):
    with open(os.environ["COUNTER_FILE"], "a") as f:
        f.write("ran\\n")
    return x * 10

@flow
def pipeline(x: int):
    state = expensive(x, return_state=True)
    return state.name, state.result()
'''


@pytest.fixture
def project(tmp_path):
    (tmp_path / "pipeline_mod.py").write_text(PIPELINE)
    counter = tmp_path / "counter.txt"
    counter.touch()
    return tmp_path, {"COUNTER_FILE": str(counter)}


def _run(project, code):
    folder, env = project
    return run_python(code, folder / "home", env=env, cwd=folder).stdout.strip().splitlines()[-1]


def _runs(project) -> int:
    return len((project[0] / "counter.txt").read_text().splitlines())


def test_a_hit_survives_a_new_process(project):
    code = "from pipeline_mod import pipeline; print(pipeline(4))"
    assert _run(project, code) == "('Completed', 40)"
    assert _run(project, code) == "('Cached', 40)"
    assert _runs(project) == 1


def test_a_damaged_cache_database_is_set_aside_with_a_warning(project):
    folder, env = project
    code = "from pipeline_mod import pipeline; print(pipeline(4))"
    _run(project, code)
    (folder / "home" / "cache" / "cache.db").write_bytes(b"not a database" * 1000)
    result = run_python(code, folder / "home", env=env, cwd=folder)
    assert result.stdout.strip() == "('Completed', 40)"
    assert "result cache database was damaged" in result.stderr
    assert list((folder / "home").glob("cache.corrupt-*"))
    assert _run(project, code) == "('Cached', 40)"


LOCKED = '''
import os, time
from pathlib import Path
from nbflow import flow, task
from nbflow.cache_policies import INPUTS

@task(cache_policy=INPUTS.configure(lock=True))
def train(x):
    with open(os.environ["COUNTER_FILE"], "a") as f:
        f.write("ran\\n")
    Path(os.environ["STARTED"]).touch()
    deadline = time.monotonic() + 60
    while not Path(os.environ["OTHER_READY"]).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(1.0)  # the other process is now waiting for this key
    return x * 2

@flow
def pipeline(x: int):
    state = train(x, return_state=True)
    return state.name, state.result()
'''


def test_two_processes_with_a_locked_key_compute_it_once(tmp_path):
    (tmp_path / "locked_mod.py").write_text(LOCKED)
    counter, started, ready = tmp_path / "counter.txt", tmp_path / "started", tmp_path / "ready"
    counter.touch()
    env = {**os.environ, "NBFLOW_HOME": str(tmp_path / "home"), "COUNTER_FILE": str(counter),
           "STARTED": str(started), "OTHER_READY": str(ready), "PYTHONPATH": str(REPO)}
    code = "import os, pathlib, sys; from locked_mod import pipeline; {touch}print(pipeline(21))"
    first = subprocess.Popen([sys.executable, "-c", code.format(touch="")], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.01)
        assert started.exists(), first.poll()
        second = subprocess.run([sys.executable, "-c", code.format(touch="pathlib.Path(os.environ['OTHER_READY']).touch(); ")],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()  # a hung first process fails the test; it must not outlive it
            first.communicate()
    assert first.returncode == 0 and second.returncode == 0, (err, second.stderr)
    assert out.strip() == "('Completed', 42)"
    assert second.stdout.strip() == "('Cached', 42)"
    assert len(counter.read_text().splitlines()) == 1


CELL = '''
import os
from nbflow import flow, task
from nbflow.cache_policies import DEFAULT

def scale(x):
    return x * 3

@task(cache_policy=DEFAULT)
def notebook_step(x):
    with open(os.environ["COUNTER_FILE"], "a") as f:
        f.write("ran\\n")
    return scale(x)

@flow
def notebook_flow(x: int):
    return notebook_step(x, return_state=True).name

print("STATE", notebook_flow(5))
'''


def test_a_hit_survives_a_kernel_restart(project):
    jupyter_client = pytest.importorskip("jupyter_client")
    folder, env = project
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel(env={**os.environ, **env, "NBFLOW_HOME": str(folder / "home"), "PYTHONPATH": str(REPO)},
                    cwd=str(folder))
    try:
        states = [_execute(km, CELL)]
        km.restart_kernel(now=False)
        states.append(_execute(km, CELL))
    finally:
        km.shutdown_kernel(now=True)
    assert states == ["Completed", "Cached"]
    assert _runs(project) == 1


def _execute(km, code: str) -> str:
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        out: list[str] = []

        def hook(msg):
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("ERROR " + "\n".join(msg["content"]["traceback"]))

        reply = client.execute_interactive(textwrap.dedent(code), timeout=60, output_hook=hook)
        assert reply["content"]["status"] == "ok", "".join(out)
        lines = [line for line in "".join(out).splitlines() if line.startswith("STATE ")]
        assert lines, "".join(out)
        return lines[-1].split(" ", 1)[1]
    finally:
        client.stop_channels()
