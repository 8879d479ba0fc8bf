"""The demo pipeline behind ``nbflow demo``: a first run, then a rerun that reuses cached tasks.

Module-level flows, so ``nbflow flow-run rerun ID`` can rerun them from any process too.
"""

from __future__ import annotations

import random
import time

from nbflow import flow, get_run_logger, task
from nbflow.tasks import exponential_backoff

SOURCES = ("orders", "customers", "products", "payments", "shipments")
FLAKY_SOURCE = "payments"


@task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=0.1), retry_jitter_factor=0.2)
def extract(source: str) -> list[int]:
    """Pretend to call a flaky API: the first call for FLAKY_SOURCE in a process times out."""
    time.sleep(0.3)
    if source == FLAKY_SOURCE and source not in _failed_once:
        _failed_once.add(source)
        raise ConnectionError(f"{source} API timed out")
    rng = random.Random(source)
    return [rng.randint(1, 100) for _ in range(1_000)]


@task
def transform(rows: list[int]) -> dict[str, float]:
    time.sleep(0.2)
    return {"rows": len(rows), "mean": sum(rows) / len(rows)}


@task
def combine(summaries: list[dict[str, float]]) -> dict[str, float]:
    return {"rows": sum(s["rows"] for s in summaries), "mean": sum(s["mean"] for s in summaries) / len(summaries)}


@flow(name="demo-report", log_prints=True)
def report(totals: dict[str, float]) -> str:
    text = f"{totals['rows']:.0f} rows, mean {totals['mean']:.2f}"
    print(f"Report: {text}")
    return text


@flow(name="demo-pipeline", log_prints=True)
def pipeline(sources: list[str] = list(SOURCES)) -> str:  # noqa: B006 - validated into a new list per run
    """Extract in parallel (with retries), transform, combine, and report in a subflow."""
    raw = [extract.submit(source) for source in sources]
    summaries = [transform.submit(rows) for rows in raw]
    totals = combine(summaries)
    get_run_logger().info(f"Combined {len(sources)} sources")
    return report(totals)


_failed_once: set[str] = set()


def main() -> int:
    """Run the pipeline, then rerun it: the rerun is served from the result cache."""
    started = time.perf_counter()
    first = pipeline(return_state=True)
    first_seconds = time.perf_counter() - started
    started = time.perf_counter()
    second = pipeline.rerun(return_state=True)
    second_seconds = time.perf_counter() - started
    print()
    print(f"First run:  {first!r} in {first_seconds:.2f} s")
    print(f"Rerun:      {second!r} in {second_seconds:.2f} s (unchanged tasks came from the cache)")
    print("History:    nbflow flow-run ls   |   logs: nbflow flow-run logs <name>   |   cache: nbflow cache ls")
    return 0 if first.is_completed() and second.is_completed() else 1
