"""The home is private: its files are 0600 and its folders 0700, a home or cache folder others can
write is refused, the cache loads only what nbflow wrote for this home, and reading the history never
imports a module or unpickles a value named by the database."""

from __future__ import annotations

import os
import pickle
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cache_support import CacheHarness
from store_support import env, nbflow, recording, script

from nbflow import flow, task
from nbflow._app.wiring import build_runtime
from nbflow._core.settings import Settings
from nbflow.cache_policies import INPUTS
from nbflow.exceptions import ConfigurationError

BIG = 100_000  # bytes: diskcache keeps a value this large in a file of its own


@task(cache_policy=INPUTS)
def payload(size: int) -> bytes:
    return b"x" * size


@flow
def produce() -> int:
    return len(payload(10)) + len(payload(BIG))


@flow
def fetch(size: int) -> tuple[str, bytes]:
    """The state the task ended in (``Cached`` on a hit) and its result."""
    state = payload(size, return_state=True)
    return state.name, state.result()


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- modes ---------------------------------------------------------------------------------------

def test_a_new_home_and_everything_in_it_is_private_after_real_runs_and_cache_writes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    previous = os.umask(0o022)  # the usual umask, which made every file 0644 (restored at once after)
    try:
        with recording(home) as runtime:
            assert produce() == 10 + BIG
            runtime.store.flush()
            runtime.cache.flush(10)
            files = [home / "nbflow.db", home / "nbflow.db-wal", home / "nbflow.db-shm", home / "cache" / "cache.db"]
            values = list((home / "cache").rglob("*.val"))
            assert values, "the large result should be a file of its own"
            assert {str(p): oct(mode(p)) for p in files + values} == {str(p): "0o600" for p in files + values}
            assert oct(mode(home)) == oct(mode(home / "cache")) == "0o700"
            folders = [p for p in home.rglob("*") if p.is_dir()]
            assert {str(p): oct(mode(p)) for p in folders} == {str(p): "0o700" for p in folders}
    finally:
        os.umask(previous)


def test_under_a_group_friendly_umask_no_folder_in_the_home_is_group_writable(tmp_path: Path) -> None:
    # os.makedirs gives only the last folder the mode asked for: the result files' xx/ folder was 0775.
    home = tmp_path / "home"
    previous = os.umask(0o002)
    try:
        with recording(home) as runtime:
            produce()
            runtime.cache.flush(10)
    finally:
        os.umask(previous)
    paths = [p for p in home.rglob("*") if not p.is_symlink()] + [home]
    loose = {str(p): oct(mode(p)) for p in paths if mode(p) & 0o077}
    assert loose == {}


def test_files_an_older_nbflow_made_readable_are_made_private_and_keep_their_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with recording(home) as runtime:
        produce()
        runtime.cache.flush(10)
    values = list((home / "cache").rglob("*.val"))
    assert values
    for path in [home / "nbflow.db", home / "cache" / "cache.db", *values]:
        os.chmod(path, 0o644)
    for folder in [home, home / "cache", *{v.parent for v in values}]:
        os.chmod(folder, 0o755)  # readable by everyone, as an older nbflow left them
    with recording(home) as runtime:
        produce()
        runtime.cache.flush(10)
        with runtime.store.reading(flush=True) as conn:
            assert conn.execute("SELECT count(*) FROM flow_runs").fetchone()[0] == 2
    assert oct(mode(home / "nbflow.db")) == oct(mode(home / "cache" / "cache.db")) == "0o600"
    assert {oct(mode(v)) for v in values} == {"0o600"}
    assert oct(mode(home)) == oct(mode(home / "cache")) == "0o700"
    assert {oct(mode(v.parent)) for v in values} == {"0o700"}


# --- homes others can write ---------------------------------------------------------------------------

def _refused(home: Path, store_enabled: bool) -> str:
    with pytest.raises(ConfigurationError) as info:
        build_runtime(Settings(home=str(home), store_enabled=store_enabled), console=False)
    return str(info.value)


@pytest.mark.parametrize("store_enabled", [True, False], ids=["store", "cache-only"])
@pytest.mark.parametrize("bits", [0o777, 0o770, 0o702], ids=["world", "group", "other"])
def test_a_home_others_can_write_is_refused_with_the_fix(tmp_path: Path, bits: int, store_enabled: bool) -> None:
    home = tmp_path / "shared"
    home.mkdir()
    os.chmod(home, bits)
    message = _refused(home, store_enabled)
    assert str(home) in message and f"chmod 700 {home}" in message and "NBFLOW_HOME" in message
    assert "writable by" in message
    assert list(home.iterdir()) == []  # nothing was created in it
    assert mode(home) == bits  # and it was not "fixed" behind the user's back


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a folder away needs root")
def test_a_home_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "theirs"
    home.mkdir(mode=0o700)
    os.chown(home, 65534, 65534)
    message = _refused(home, True)
    assert str(home) in message and "owned by" in message and "another NBFLOW_HOME" in message


def test_a_cache_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "cache").mkdir(parents=True)
    os.chmod(home, 0o700)
    os.chmod(home / "cache", 0o777)
    message = _refused(home, False)
    assert str(home / "cache") in message and f"chmod 700 {home / 'cache'}" in message


# --- the cache loads only its own entries -----------------------------------------------------------------

class _Plant:
    """A pickle that, when loaded, creates a file: what an attacker's planted entry would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def _overwrite_values(home: Path, value: bytes) -> int:
    with sqlite3.connect(str(home / "cache" / "cache.db")) as conn:
        return conn.execute("UPDATE Cache SET value = ? WHERE filename IS NULL", (value,)).rowcount


def test_a_pickle_planted_in_the_cache_is_never_loaded_and_the_task_recomputes(tmp_path: Path) -> None:
    home, marker = tmp_path / "home", tmp_path / "planted-code-ran"
    with CacheHarness(home):
        fetch(10)
    assert _overwrite_values(home, pickle.dumps(_Plant(marker))) == 1

    with CacheHarness(home) as again:
        assert fetch(10) == ("Completed", b"x" * 10)
    warnings = again.warnings()
    assert not marker.exists()
    assert len(warnings) == 1 and "not written by nbflow for this home" in warnings[0], warnings


def test_an_entry_copied_from_another_home_is_a_miss(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for home in (first, second):
        with CacheHarness(home):
            fetch(10)
    with sqlite3.connect(str(first / "cache" / "cache.db")) as conn:
        (theirs,) = conn.execute("SELECT value FROM Cache").fetchone()  # tagged with the first home's key
    assert _overwrite_values(second, theirs) == 1
    with CacheHarness(second) as again:
        assert fetch(10)[0] == "Completed"
    warnings = again.warnings()
    assert len(warnings) == 1 and "not written by nbflow for this home" in warnings[0]
    assert oct(mode(second / "cache.key")) == "0o600"


def test_a_row_planted_in_diskcaches_own_pickle_mode_is_never_unpickled(tmp_path: Path) -> None:
    # diskcache unpickles a row of its MODE_PICKLE (4) itself when asked to fetch it: never asked.
    home, marker = tmp_path / "home", tmp_path / "planted-code-ran"
    with CacheHarness(home):
        fetch(10)
    with sqlite3.connect(str(home / "cache" / "cache.db")) as conn:
        conn.execute("UPDATE Cache SET mode = 4, value = ?", (pickle.dumps(_Plant(marker)),))
    with CacheHarness(home) as again:
        assert fetch(10) == ("Completed", b"x" * 10)
    warnings = again.warnings()
    assert not marker.exists()
    assert len(warnings) == 1 and "not written by nbflow for this home" in warnings[0], warnings


def test_an_entry_moved_to_another_key_is_a_miss_not_a_wrong_result(tmp_path: Path) -> None:
    # Someone who can write the cache swaps fetch(10)'s stored value into fetch(20)'s row: the tag
    # covers the key, so fetch(20) recomputes instead of returning ten bytes.
    home = tmp_path / "home"
    with CacheHarness(home):
        fetch(10)
        fetch(20)
    with sqlite3.connect(str(home / "cache" / "cache.db")) as conn:
        rows = conn.execute("SELECT rowid, value FROM Cache ORDER BY length(value)").fetchall()
        assert len(rows) == 2
        conn.execute("UPDATE Cache SET value = ? WHERE rowid = ?", (rows[0][1], rows[1][0]))
    conn.close()
    with CacheHarness(home) as again:
        assert fetch(20) == ("Completed", b"x" * 20)
        assert fetch(10) == ("Cached", b"x" * 10)
    warnings = again.warnings()
    assert len(warnings) == 1, warnings


def test_a_row_naming_a_file_outside_the_cache_never_reads_or_deletes_it(tmp_path: Path) -> None:
    # diskcache deletes a dropped row's file by the name in the row: a planted '../../x' must not
    # make nbflow read, or delete, a file outside the cache.
    home, victim = tmp_path / "home", tmp_path / "victim.txt"
    victim.write_text("keep me")
    with CacheHarness(home):
        fetch(BIG)
    with sqlite3.connect(str(home / "cache" / "cache.db")) as conn:
        conn.execute("UPDATE Cache SET filename = ? WHERE filename IS NOT NULL", (str(Path("..", "..", "victim.txt")),))
    conn.close()
    with CacheHarness(home) as again:
        assert fetch(BIG) == ("Completed", b"x" * BIG)  # a miss: recomputed
    warnings = again.warnings()
    assert victim.read_text() == "keep me"
    assert len(warnings) == 1, warnings


@task(cache_policy=INPUTS)
def array_payload(n: int):  # type: ignore[no-untyped-def]
    import numpy as np

    return np.arange(n, dtype=np.float64)  # written from its own memory, on the task's thread


@flow
def fetch_array(n: int) -> tuple[str, object]:
    state = array_payload(n, return_state=True)
    return state.name, state.result()


def _value_file(home: Path) -> Path:
    with sqlite3.connect(str(home / "cache" / "cache.db")) as conn:
        (filename,) = conn.execute("SELECT filename FROM Cache WHERE filename IS NOT NULL").fetchone()
    return home / "cache" / filename


@pytest.mark.parametrize("kind", ["bytes", "array"])
@pytest.mark.parametrize("how", ["planted-pickle", "from-another-home", "one-byte-changed"])
def test_a_large_result_file_without_this_homes_tag_is_never_loaded(tmp_path: Path, kind: str, how: str) -> None:
    np = pytest.importorskip("numpy")
    home, other, marker = tmp_path / "home", tmp_path / "other", tmp_path / "planted-code-ran"
    call = (lambda: fetch(BIG)) if kind == "bytes" else (lambda: fetch_array(BIG // 8))

    def same(value: object) -> bool:
        return value == b"x" * BIG if kind == "bytes" else bool(np.array_equal(value, np.arange(BIG // 8)))

    for each in (home, other):
        with CacheHarness(each):
            call()
    planted = _value_file(home)
    if how == "planted-pickle":  # what an older nbflow (or diskcache itself) would have written there
        planted.write_bytes(pickle.dumps(_Plant(marker)))
    elif how == "from-another-home":
        planted.write_bytes(_value_file(other).read_bytes())
    else:  # damaged on disk: one byte of the value itself, far from either end of the file
        data = bytearray(planted.read_bytes())
        data[len(data) // 2] ^= 0xFF
        planted.write_bytes(bytes(data))

    with CacheHarness(home) as again:
        name, value = call()
        assert name == "Completed" and same(value)  # recomputed, never loaded
        again.cache.flush(10)
        name, value = call()
        assert name == "Cached" and same(value)  # the recomputed result replaced it
    warnings = again.warnings()
    assert not marker.exists()
    assert len(warnings) == 1 and "not written by nbflow for this home" in warnings[0], warnings
    assert not planted.exists()  # dropped with its row, not left behind


@pytest.mark.slow  # another process
def test_entries_of_this_home_still_hit_in_another_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with CacheHarness(home):
        fetch(10), fetch(BIG)
    code = f"""
from nbflow._app.wiring import build_runtime
from nbflow._engine.runtime import use_runtime
from nbflow._core.settings import Settings
from test_home_security import fetch, BIG
with use_runtime(build_runtime(Settings(home={str(home)!r}, store_enabled=False), console=False)):
    print(fetch(10)[0], fetch(BIG)[0])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=env(home, PYTHONPATH=str(Path(__file__).parent) + os.pathsep + str(Path(__file__).parent.parent)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Cached", "Cached"] and "WARNING" not in done.stderr


# --- reading history runs nothing of the database's ------------------------------------------------------

EVIL = """
from pathlib import Path
Path({marker!r}).touch()
"""


def _crafted_home(tmp_path: Path) -> tuple[Path, Path, Path, dict[str, str]]:
    """A home whose one flow run row names a planted module and holds a planted pickle, and looks
    like a run whose process died (so the crash sweep finds it)."""
    home = tmp_path / "home"
    imported, unpickled = tmp_path / "module-was-imported", tmp_path / "pickle-was-loaded"
    planted = tmp_path / "planted"
    planted.mkdir()
    script(planted / "evilmod.py", EVIL.format(marker=str(imported)))
    with recording(home):
        produce()
    with sqlite3.connect(str(home / "nbflow.db")) as conn:
        conn.execute(
            "UPDATE flow_runs SET flow_ref = 'evilmod:produce', state_type = 'RUNNING', state_name = 'Running',"
            " host = 'another-host', heartbeat = 1, start_time = 1, parameters_pickle = ?",
            (pickle.dumps({"x": _Plant(unpickled)}),),
        )
    return home, imported, unpickled, {"PYTHONPATH": str(planted)}


@pytest.mark.slow
def test_reading_history_never_imports_or_unpickles_what_a_row_names(tmp_path: Path) -> None:
    home, imported, unpickled, extra = _crafted_home(tmp_path)
    listed = nbflow(home, "flow-run", "ls", **extra)
    assert listed.returncode == 0 and "Crashed" in listed.stdout, listed.stderr
    run_id = listed.stdout.splitlines()[1].split()[0]
    for command in (["inspect", run_id], ["logs", run_id], ["inspect", run_id, "--json"]):
        done = nbflow(home, "flow-run", *command, **extra)
        assert done.returncode == 0, done.stderr
    code = "import nbflow.runs as r; rs = r.flow_runs(); r.graph(rs[0].id); r.logs(rs[0].id); print(rs[0].parameters)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(home, **extra),
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert not imported.exists() and not unpickled.exists()


@pytest.mark.parametrize("ref, why", [
    ("evil mod:produce", "module:qualname"),
    ("os.path:join;x", "module:qualname"),
    ("relative/evilmod.py:produce", "absolute path"),
    ("{missing}:produce", "is gone"),
    ("{text}:produce", ".py file"),
], ids=["space", "junk-qualname", "relative-path", "missing-file", "not-python"])
@pytest.mark.slow  # a CLI subprocess per case
def test_a_rerun_refuses_a_flow_ref_that_is_not_a_module_or_an_existing_script(tmp_path: Path, ref: str, why: str) -> None:
    home = tmp_path / "home"
    with recording(home):
        produce()
    text = tmp_path / "notes.txt"
    text.write_text("print('never run')")
    ref = ref.format(missing=tmp_path / "gone.py", text=text)
    with sqlite3.connect(str(home / "nbflow.db")) as conn:
        conn.execute("UPDATE flow_runs SET flow_ref = ?", (ref,))
    done = nbflow(home, "flow-run", "rerun", _only_run(home))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert why in done.stderr and ref.rpartition(":")[0] in done.stderr  # it names what it refused


def _only_run(home: Path) -> str:
    with sqlite3.connect(str(home / "nbflow.db")) as conn:
        return str(conn.execute("SELECT id FROM flow_runs").fetchone()[0])
