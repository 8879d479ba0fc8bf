"""Cache-key hashing speed: bulk array throughput, and the per-task-call cost of small keys.

Run: ``python benchmarks/hashing.py``. ``run()`` returns the rows for other reports.
"""

from __future__ import annotations

import hashlib
import linecache
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbflow._core.hashing.encoder import hash_parameters, stable_hash  # noqa: E402
from nbflow._core.hashing.source import source_hash  # noqa: E402

ARRAY_BYTES = 100 * 1024 * 1024


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _per_call_us(fn: Callable[[], Any], calls: int = 20_000, repeats: int = 5) -> float:
    def loop() -> None:
        for _ in range(calls):
            fn()

    return _best_seconds(loop, repeats) / calls * 1e6


def _helper(x: int) -> int:
    return x * 2


def small_task(x: int) -> int:
    """The kind of function a task wraps: calls one user helper."""
    return _helper(x) + 1


def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        import numpy as np
    except ImportError:
        np = None
    if np is not None:
        array = np.random.default_rng(0).random(ARRAY_BYTES // 8)  # float64, 100 MiB
        seconds = _best_seconds(lambda: stable_hash(array), 3)
        rows.append({"name": "stable_hash, 100 MiB float64 array", "value": round(ARRAY_BYTES / seconds / 1e9, 2), "unit": "GB/s",
                     "target": "≥ 1 GB/s", "target_min": 1.0, "note": "best of 3; the sha256 row below is the ceiling"})
        strided = array[::2]  # non-contiguous: costs one copy
        seconds = _best_seconds(lambda: stable_hash(strided), 3)
        rows.append({"name": "stable_hash, 50 MiB strided view", "value": round(strided.nbytes / seconds / 1e9, 2), "unit": "GB/s"})
        raw = memoryview(array).cast("B")
        seconds = _best_seconds(lambda: hashlib.sha256(raw).digest(), 3)
        rows.append({"name": "hashlib.sha256 alone, same buffer (ceiling)", "value": round(ARRAY_BYTES / seconds / 1e9, 2), "unit": "GB/s"})
        del array, strided, raw
    try:
        import pandas as pd
    except ImportError:
        pd = None
    if pd is not None and np is not None:
        n = 1_000_000
        frame = pd.DataFrame({"i": np.arange(n), "f": np.arange(n) * 0.5, "s": [f"k{i % 1000}" for i in range(n)]})
        seconds = _best_seconds(lambda: stable_hash(frame), 3)
        rows.append({"name": "stable_hash, DataFrame 1M rows (int, float, str)", "value": round(seconds * 1e3, 1),
                     "unit": "ms"})
    parameters = {"x": 1, "name": "abc"}
    rows.append({"name": 'hash_parameters({"x": 1, "name": "abc"})',
                 "value": round(_per_call_us(lambda: hash_parameters(parameters)), 2), "unit": "µs"})
    rows.append({"name": "source_hash, small function + helper (cached)",
                 "value": round(_per_call_us(lambda: source_hash(small_task)), 2), "unit": "µs"})

    cell = "def t(x):\n    return _helper(x) + 1\n"
    linecache.cache["<bench-cell>"] = (len(cell), None, cell.splitlines(True), "<bench-cell>")

    def first_call() -> None:
        # a new code object, as after re-running a notebook cell: reads and parses the source once
        namespace: dict[str, Any] = {"_helper": _helper}
        exec(compile(cell, "<bench-cell>", "exec"), namespace)
        source_hash(namespace["t"])

    rows.append({"name": "source_hash, first call for new code (reads source)",
                 "value": round(_per_call_us(first_call, calls=500), 1), "unit": "µs"})
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:<52} {row['value']:>10} {row['unit']}")
