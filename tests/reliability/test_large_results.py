"""Large results: persisted without a second copy in memory, never loadable half-written, and (when
they cannot change) written off the task's critical path.

Real processes share one home. A process is killed mid-write, or held mid-write, by an injected
fault: ``nbflow._services.cache.files._write_all`` is wrapped in the child so that it writes half of a large
buffer, creates a marker file and then blocks (until a release file appears, or forever).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cache_support import REPO, CacheHarness, run_python

from nbflow import flow, task
from nbflow.cache_policies import INPUTS

pytestmark = pytest.mark.slow

MB = 2**20
ARRAY_BYTES = 200 * MB  # the smallest size at which a second copy stands out from the interpreter's noise

PIPELINE = '''
import os
from nbflow import flow, task
from nbflow.cache_policies import INPUTS

def _count():
    with open(os.environ["COUNTER_FILE"], "a") as f:
        f.write("ran\\n")

@task
def array(nbytes: int):
    import numpy as np
    _count()
    return np.full(nbytes // 8, 1.5)

@task(cache_policy=INPUTS)
def blob(nbytes: int):
    _count()
    return b"%" * nbytes

@task(cache_policy=INPUTS)
def cached_array(nbytes: int):
    import numpy as np
    _count()
    return np.full(nbytes // 8, 2.5)

@flow
def arrays(nbytes: int):
    state = array(nbytes, return_state=True)
    a = state.result()
    return state.name, float(a.sum()), a.nbytes

@flow
def warm():  # a run of another flow: `arrays.rerun()` still reruns the latest run of `arrays`
    return array(1 << 20).nbytes

@flow
def one(kind: str, nbytes: int):
    fn = blob if kind == "bytes" else cached_array
    state = fn(nbytes, return_state=True)
    value = state.result()
    return state.name, len(value) if kind == "bytes" else value.nbytes, bytes(memoryview(value).cast("B")[-1:]).hex()
'''

# Wraps the file writer in the child: half of the first large buffer, then a marker, then blocked
# until $RELEASE_FILE exists (never, if it is not set).
HOLD = '''
import os, time
import nbflow._services.cache.files as files
_real = files._write_all
def _held(fd, buffer):
    view = memoryview(buffer).cast("B") if buffer.__class__ is not files.pickle.PickleBuffer else buffer.raw()
    if len(view) < 1 << 20 or os.path.exists(os.environ["HELD_FILE"]):
        return _real(fd, buffer)
    _real(fd, view[: len(view) // 2])
    open(os.environ["HELD_FILE"], "w").close()
    release = os.environ.get("RELEASE_FILE")
    while release is None or not os.path.exists(release):
        time.sleep(0.01)
    _real(fd, view[len(view) // 2:])
files._write_all = _held
'''


@pytest.fixture
def project(tmp_path):
    (tmp_path / "bigflow.py").write_text(PIPELINE)
    counter = tmp_path / "counter.txt"
    counter.touch()
    env = {"COUNTER_FILE": str(counter), "HELD_FILE": str(tmp_path / "held"), "NBFLOW_STORE_ENABLED": "true"}
    return tmp_path, env


def _runs(folder: Path) -> int:
    return len((folder / "counter.txt").read_text().splitlines())


def _last_json(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


_spawned: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _reap_spawned():
    """A process held mid-write waits for its release file forever: a failing test must not leave it."""
    yield
    while _spawned:
        proc = _spawned.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def _spawn(code: str, folder: Path, env: dict[str, str]) -> subprocess.Popen:
    full_env = {**os.environ, "NBFLOW_HOME": str(folder / "home"), **env,
                "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=folder, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _spawned.append(proc)
    return proc


def _wait_for(path: Path, proc: subprocess.Popen, deadline_s: float = 120) -> None:
    """Poll (no fixed sleep) until ``path`` exists; fail early if ``proc`` ended instead."""
    deadline = time.monotonic() + deadline_s
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process ended before {path.name} appeared:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"{path.name} did not appear within {deadline_s} s"
        time.sleep(0.01)


def _no_temp_files(folder: Path) -> list[str]:
    tmp = folder / "home" / "cache-writing"
    return sorted(os.listdir(tmp)) if tmp.exists() else []


# --- memory -------------------------------------------------------------------------------------

def test_a_large_array_is_persisted_and_reloaded_without_a_second_copy(project):
    folder, env = project
    measure = '''
        import json, resource
        from bigflow import arrays, warm
        warm()  # imports done, the cache and the run store open: what is left to grow is the result
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        name, total, nbytes = {call}
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        print(json.dumps({{"state": name, "total": total, "nbytes": nbytes, "grown": grown}}))
    '''
    first = _last_json(run_python(measure.format(call=f"arrays({ARRAY_BYTES})"), folder / "home", env=env, cwd=folder))
    assert first["state"] == "Completed" and first["nbytes"] == ARRAY_BYTES
    # The array itself is ARRAY_BYTES; persisting it must not add a pickled copy of it.
    assert first["grown"] < 1.25 * ARRAY_BYTES, f"peak RSS grew {first['grown'] / MB:.0f} MB for a {ARRAY_BYTES // MB} MB result"

    again = _last_json(run_python(measure.format(call="arrays.rerun()"), folder / "home", env=env, cwd=folder))
    assert again["state"] == "Cached" and again["total"] == first["total"] == 1.5 * ARRAY_BYTES / 8
    assert again["grown"] < 1.25 * ARRAY_BYTES, f"loading grew peak RSS {again['grown'] / MB:.0f} MB"
    assert _runs(folder) == 3  # two warm-ups and the large run; the rerun loaded the stored result


def test_a_large_mutable_result_is_saved_as_returned(h):
    np = pytest.importorskip("numpy")

    @task(cache_policy=INPUTS)
    def ones(n):
        return np.ones(n)

    @flow
    def pipeline():
        first = ones(1 << 18)  # 2 MB: a file of its own
        first[:] = 7.0  # the flow changes the array after the task returned it
        state = ones(1 << 18, return_state=True)
        return state.name, state.result()

    name, again = pipeline()
    assert name == "Cached" and float(again.max()) == 1.0


def test_a_result_of_several_arrays_loads_as_it_was_returned(tmp_path):
    # Arrays load as views of the one buffer the file was read into: each keeps its dtype, order
    # and writability (a read-only array stays read-only, the others can be changed in place).
    np = pytest.importorskip("numpy")

    @task(cache_policy=INPUTS)
    def arrays(n):
        frozen = np.arange(n, dtype=np.int32)
        frozen.flags.writeable = False
        return {"c": np.ones((n, 3)), "f": np.asfortranarray(np.full((n, 3), 1j)), "frozen": frozen, "name": "run"}

    @flow
    def pipeline():
        state = arrays(20_000, return_state=True)
        return state.name, state.result()

    results = []
    for _ in range(2):  # a fresh runtime each time: the second loads from the file
        with CacheHarness(tmp_path / "home"):
            results.append(pipeline())
    (first, returned), (second, loaded) = results
    assert (first, second) == ("Completed", "Cached") and loaded["name"] == "run"
    for name in ("c", "f", "frozen"):
        assert np.array_equal(loaded[name], returned[name]) and loaded[name].dtype == returned[name].dtype
        assert loaded[name].flags.f_contiguous == returned[name].flags.f_contiguous
        assert loaded[name].flags.writeable == (name != "frozen") and loaded[name].flags.aligned
    loaded["c"][0, 0] = 5.0  # a loaded array is the caller's to change


# --- killed and concurrent writers -----------------------------------------------------------

@pytest.mark.parametrize("kind", ["array", "bytes"])
def test_a_process_killed_mid_write_leaves_no_loadable_entry(project, kind):
    folder, env = project
    writer = _spawn(HOLD + f"\nfrom bigflow import one\none({kind!r}, {32 * MB})\n", folder, env)
    _wait_for(folder / "held", writer)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    (folder / "held").unlink()

    code = f"import json; from bigflow import one; print(json.dumps(one({kind!r}, {32 * MB})))"
    done = run_python(code, folder / "home", env=env, cwd=folder)
    state, size, last = _last_json(done)
    assert state == "Completed" and size == 32 * MB  # recomputed: the half-written one never loaded
    if kind == "bytes":  # written in the background: its row said "being written", by a dead process
        assert "was never completely written" in done.stdout + done.stderr
    state, size, last = _last_json(run_python(code, folder / "home", env=env, cwd=folder))
    assert state == "Cached" and size == 32 * MB
    assert _runs(folder) == 2  # the killed run and the recomputation
    assert _no_temp_files(folder) == []  # the dead writer's temp file was cleaned up


def test_a_process_reading_a_result_while_it_is_written_waits_for_the_whole_value(project):
    folder, env = project
    release = folder / "release"
    held_env = {**env, "RELEASE_FILE": str(release)}
    writer = _spawn(HOLD + f"""
from bigflow import one
print(one("bytes", {32 * MB}), flush=True)
""", folder, held_env)
    _wait_for(folder / "held", writer)
    # The row says "being written" now; the reader waits for that file's lock (and says so).
    reader = _spawn(f"""
import json
import nbflow._services.cache.files as files
_real = files.wait_written
def _waiting(*args, **kwargs):
    open({str(folder / "waiting")!r}, "w").close()
    return _real(*args, **kwargs)
files.wait_written = _waiting
from bigflow import one
print(json.dumps(one("bytes", {32 * MB})))
""", folder, env)
    _wait_for(folder / "waiting", reader)
    release.touch()
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    state, size, last = json.loads(out.strip().splitlines()[-1])
    assert (state, size, last) == ("Cached", 32 * MB, b"%".hex())
    writer.communicate(timeout=120)
    assert writer.returncode == 0
    assert _runs(folder) == 1


def test_the_flow_returns_before_its_large_write_ends_and_exit_finishes_it(project):
    folder, env = project
    release = folder / "release"
    writer = _spawn(HOLD + f"""
from bigflow import one
print(one("bytes", {32 * MB}), flush=True)
open({str(folder / "returned")!r}, "w").close()
""", folder, {**env, "RELEASE_FILE": str(release)})
    # Both appear while the write is held: the flow returned with its result half written.
    _wait_for(folder / "held", writer)
    _wait_for(folder / "returned", writer)
    release.touch()
    writer.communicate(timeout=120)
    assert writer.returncode == 0  # exit waited for the write
    code = f"import json; from bigflow import one; print(json.dumps(one('bytes', {32 * MB})))"
    assert _last_json(run_python(code, folder / "home", env=env, cwd=folder))[0] == "Cached"
    assert _runs(folder) == 1


def test_a_result_that_does_not_fit_the_background_budget_is_written_at_once(project):
    folder, env = project
    release = folder / "release"
    writer = _spawn(HOLD + f"""
import nbflow._services.cache.files as files
files.MAX_BACKGROUND_BYTES = {40 * MB}
from bigflow import one
one("bytes", {32 * MB})          # held half-written in the background
while not os.path.exists(os.environ["HELD_FILE"]):
    time.sleep(0.01)
one("bytes", {32 * MB + 1})      # 64 MB pending would pass the budget: written before the task returns
open({str(folder / "returned")!r}, "w").close()
""", folder, {**env, "RELEASE_FILE": str(release)})
    _wait_for(folder / "returned", writer)
    code = f"import json; from bigflow import one; print(json.dumps(one('bytes', {32 * MB + 1})))"
    assert _last_json(run_python(code, folder / "home", env=env, cwd=folder))[0] == "Cached"
    release.touch()
    writer.communicate(timeout=120)
    assert writer.returncode == 0
