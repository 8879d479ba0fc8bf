"""The side-by-side benchmark script runs end to end and prints its table (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the benchmark script in subprocesses (its quick table: ~12 s, with a real kernel)

REPO = Path(__file__).resolve().parents[1]
COMPARE = REPO / "benchmarks" / "compare.py"


def run_compare(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(COMPARE), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )


def test_quick_nbflow_only_prints_the_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = run_compare("--quick", "--only", "nbflow", "--json", str(out), tmp_path=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    header = "| workload"
    assert header in done.stdout
    for column in ("nbflow", "Prefect", "Dask", "Prefect/nbflow", "Dask/nbflow"):
        assert column in done.stdout.split(header, 1)[1].splitlines()[0]
    for workload in ("import, fresh process", "first flow run", "task chain, per task",
                     "submitted tasks, per task", "peak RSS"):
        assert workload in done.stdout
    # Peers were not asked for: they say so instead of showing numbers or crashing.
    assert "not run" in done.stdout

    data = json.loads(out.read_text())
    rows = {row["workload"]: row for row in data["rows"]}
    chain = next(row for name, row in rows.items() if "task chain" in name)
    assert chain["values"]["nbflow"] > 0
    # A workload that finds its feature broken reports "skipped" and the script still exits 0: here
    # every feature exists, so each nbflow row must have a number.
    unmeasured = {name: row.get("notes") for name, row in rows.items() if row["values"].get("nbflow") is None}
    assert not unmeasured, unmeasured
    assert data["quick"] is True


def test_bad_only_value_is_one_clear_error(tmp_path: Path) -> None:
    done = run_compare("--only", "airflow", tmp_path=tmp_path)

    assert done.returncode == 2
    assert "--only takes a comma-separated list of nbflow, prefect, dask" in done.stderr
    assert "Traceback" not in done.stderr
