"""nbflow vs Prefect vs Dask: the same workloads, one run, one table.

    python benchmarks/compare.py                 # everything: about 6 minutes on 2 cores
    python benchmarks/compare.py --quick         # small N, a smoke test
    python benchmarks/compare.py --only nbflow   # skip the peers (also: --only nbflow,dask)
    python benchmarks/compare.py --json out.json

Every measurement that depends on a cold interpreter (import, first flow run, peak RSS) runs in a
fresh process with a fresh, empty home folder; console logging stays on and goes to /dev/null.
Prefect runs against its own ephemeral local server (no `prefect server start`), as a notebook
user gets it. Other feature benchmarks (`benchmarks/<name>.py` with `run() -> list[dict]`) are
picked up and their rows printed too; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import BENCH_DIR, REPO_ROOT, Homes, ProcResult, base_env, median, run_worker, time_command, time_import  # noqa: E402
from _table import FRAMEWORKS, NA, TITLES, Row, render, row_from_plugin  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    n: int  # tasks in the chain, the submitted fan and the RSS flow
    import_reps: int
    steady_reps: int


FULL = Sizes(n=1000, import_reps=7, steady_reps=20)
QUICK = Sizes(n=100, import_reps=3, steady_reps=5)

FEATURES = ("store", "cache", "hashing", "concurrency", "monitor")
"""Each feature's own benchmark module (benchmarks/<name>.py, ``run() -> list[dict]``), in table order.
Every figure is measured in one place: compare.py measures only the core rows beside Prefect and Dask."""

# What a user types before they can run the workload.
IMPORTS = {
    "nbflow": "from nbflow import flow, task",
    "prefect": "from prefect import flow, task",
    "dask": "import dask; from dask import delayed; import dask.threaded",
}
DISTRIBUTIONS = {"prefect": "prefect", "dask": "dask"}


def progress(message: str) -> None:
    print(f"… {message}", file=sys.stderr, flush=True)


def installed(framework: str) -> bool:
    if framework == "nbflow":
        return (REPO_ROOT / "nbflow" / "__init__.py").exists() or importlib.util.find_spec("nbflow") is not None
    return importlib.util.find_spec(framework) is not None


def version(framework: str) -> str:
    if framework != "nbflow":
        try:
            return importlib.metadata.version(DISTRIBUTIONS[framework])
        except importlib.metadata.PackageNotFoundError:
            return "not installed"
    text = (REPO_ROOT / "nbflow" / "__init__.py").read_text()
    found = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    described = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                               capture_output=True, text=True)
    commit = f" ({described.stdout.strip()})" if described.returncode == 0 else ""
    return (found.group(1) if found else "dev") + commit


class Bench:
    """One benchmark run: which frameworks, what sizes, the rows gathered so far."""

    def __init__(self, frameworks: list[str], sizes: Sizes) -> None:
        self.sizes = sizes
        self.frameworks = frameworks
        self.present = [fw for fw in frameworks if installed(fw)]
        self.homes = Homes()
        self.home: dict[str, Path] = {}
        self.rows: list[Row] = []
        self.tracebacks: list[str] = []
        progress("python -c pass")
        self.startup_s = median(time_command([sys.executable, "-c", "pass"], base_env(), 5))

    # -- running -------------------------------------------------------------------------------
    def env(self, framework: str, home: Path | None = None, **extra: str) -> dict[str, str]:
        home = home or self.home[framework]
        key = "PREFECT_HOME" if framework == "prefect" else "NBFLOW_HOME"
        if self.sizes is QUICK:
            extra.setdefault("NBFLOW_BENCH_QUICK", "1")
        extra.setdefault("NBFLOW_BENCH_ONLY", ",".join(self.frameworks))
        return base_env(**{key: str(home)}, **extra)

    def job(self, framework: str, job: str, home: Path | None = None, env: dict[str, str] | None = None,
            **params: object) -> ProcResult:
        progress(f"{TITLES.get(framework, framework)}: {job} {params or ''}")
        result = run_worker(framework, job, env or self.env(framework, home), **params)
        if result.error and result.traceback:
            self.tracebacks.append(f"{framework} {job}: {result.error}\n{result.traceback}")
        return result

    def row(self, workload: str, unit: str, **kw: object) -> Row:
        row = Row(workload, unit, **kw)  # type: ignore[arg-type]
        for fw in FRAMEWORKS:
            if fw not in self.frameworks:
                row.set(fw, None, "not run")
            elif fw not in self.present:
                row.set(fw, None, "not installed")
            else:
                row.set(fw, None, NA)
        self.rows.append(row)
        return row

    def put(self, row: Row, framework: str, result: ProcResult, value: float | None) -> None:
        """Record `value`, or say in the row why there is none."""
        if result.skipped:
            row.set(framework, None, "skipped")
            row.notes.append(f"{TITLES[framework]}: {result.skipped}")
        elif result.error:
            row.set(framework, None, "error")
            row.notes.append(f"{TITLES[framework]} failed: {result.error}")
            row.error = row.error or framework == "nbflow"
        else:
            row.set(framework, value)

    # -- workloads -----------------------------------------------------------------------------
    def core(self) -> None:
        s = self.sizes
        imp = self.row("import, fresh process", "ms", target="< 150 ms", target_max=150.0)
        own = self.row("import, own code (timed inside the process)", "ms", target="< 50 ms",
                       target_max=50.0)
        first = self.row("first flow run, new process, empty home", "ms", target="< 300 ms", target_max=300.0)
        steady = self.row("empty flow run, after the first", "µs", target="< 1,000 µs", target_max=1000.0)
        chain = self.row(f"{s.n:,}-task chain, per task", "µs", target="≤ Prefect/100 and < Dask")
        fan = self.row(f"{s.n:,} submitted tasks, per task", "µs", target="≤ Prefect/50 and < Dask")
        rss = self.row(f"peak RSS, process running a {s.n:,}-task flow", "MB", target="< 100 MB",
                       target_max=100.0)
        whole: dict[str, float] = {}  # new process to first run done: interpreter, imports, first run
        for fw in self.present:
            self.home[fw] = self.homes.new(fw)
            progress(f"{TITLES[fw]}: import ×{s.import_reps}")
            try:
                walls, inside = time_import(IMPORTS[fw], self.env(fw), s.import_reps)
                imp.set(fw, median(walls) * 1000)
                own.set(fw, median(inside) * 1000)
            except RuntimeError as exc:
                imp.set(fw, None, "error")
                own.set(fw, None, "error")
                imp.notes.append(f"{TITLES[fw]} import failed: {exc}")
                imp.error = imp.error or fw == "nbflow"
            r = self.job(fw, "first", steady_reps=s.steady_reps)
            self.put(first, fw, r, r.data.get("first_s", 0) * 1000)
            self.put(steady, fw, r, r.data.get("steady_s", 0) * 1e6)
            if r.data.get("process_s"):
                whole[fw] = r.data["process_s"] * 1000
            r = self.job(fw, "throughput", n=s.n)
            per_task = {k: (r.data[k] - r.data["empty_s"]) / s.n * 1e6
                        for k in ("chain_s", "submit_s") if k in r.data}
            self.put(chain, fw, r, per_task.get("chain_s"))
            self.put(fan, fw, r, per_task.get("submit_s"))
            r = self.job(fw, "rss", n=s.n)
            self.put(rss, fw, r, r.peak_rss_mb)
        for row, factor in ((chain, 100), (fan, 50)):
            bounds = [v for v in (_div(row.values.get("prefect"), factor), row.values.get("dask")) if v]
            row.target_max = min(bounds) if bounds else None
        imp.notes.append("median wall time of `python -c \"<import>\"`, " + "; ".join(
            f"{TITLES[fw]}: `{IMPORTS[fw]}`" for fw in self.present))
        first.notes.append("the first flow run itself, timed inside the process after the import (the rows "
                           "above); whole process from its start to that run's end (interpreter, imports, "
                           "first run): " + ", ".join(f"{TITLES[fw]} {ms:,.0f} ms" for fw, ms in whole.items()))
        if "prefect" in self.present:
            first.notes.append("Prefect's first run includes creating its database and starting its "
                               "ephemeral API server")
        if "dask" in self.present:
            steady.notes.append("Dask has no flows: its 'empty flow' is computing a one-node delayed "
                                "graph, its flows are delayed graphs on the threaded scheduler")
        rss.notes.append("whole process tree (Prefect's ephemeral server is a child process)")

    def plugins(self) -> None:
        """Rows of the features' benchmark modules, each run in its own fresh process.

        A module that is missing or skips (its feature not built yet) leaves one row saying so.
        """
        others = sorted(p.stem for p in BENCH_DIR.glob("[a-z]*.py")
                        if p.stem not in FEATURES and p.name != "compare.py" and "def run(" in p.read_text())
        for name in (*FEATURES, *others):
            if not (BENCH_DIR / f"{name}.py").exists():
                row = self.row(f"{name}.py", "")
                row.set("nbflow", None, "skipped")
                row.notes.append(f"benchmarks/{name}.py is missing: its rows are not in this table")
                continue
            r = self.job("plugin", name, env=self.env("nbflow", self.homes.new(f"plugin-{name}")))
            if r.error or r.skipped or not isinstance(r.data.get("rows"), list):
                row = self.row(f"{name}.py", "")
                row.set("nbflow", None, "skipped" if r.skipped else "error")
                row.notes.append(f"{name}.py: {r.skipped or r.error or 'run() returned no list'}")
                row.error = not r.skipped
                continue
            for raw in r.data["rows"]:
                row = row_from_plugin(raw if isinstance(raw, dict) else {"workload": repr(raw)})
                for fw in FRAMEWORKS:
                    if fw not in self.frameworks and row.values.get(fw) is None:
                        row.set(fw, None, "not run")
                self.rows.append(row)


def _load() -> float:
    """The 1-minute load average (NaN where the platform has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _div(value: float | None, by: float) -> float | None:
    return value / by if value is not None else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N: a smoke test, not a measurement")
    parser.add_argument("--only", default=",".join(FRAMEWORKS),
                        help="comma-separated frameworks to run (nbflow, prefect, dask); default all")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and versions as JSON")
    args = parser.parse_args(argv)
    chosen = [f.strip().lower() for f in args.only.split(",") if f.strip()]
    unknown = sorted(set(chosen) - set(FRAMEWORKS))
    if unknown or not chosen:
        parser.error(f"--only takes a comma-separated list of {', '.join(FRAMEWORKS)}; got {args.only!r}")
    args.frameworks = [f for f in FRAMEWORKS if f in chosen]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    load_before = _load()  # what else the machine was doing; at the end it counts our own processes too
    bench = Bench(args.frameworks, sizes)
    versions = {fw: version(fw) if installed(fw) else "not installed" for fw in args.frameworks}
    baseline = bench.startup_s * 1000
    try:
        bench.core()
        bench.plugins()
    finally:
        bench.homes.cleanup()
    machine = f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, " \
              f"{os.cpu_count()} CPUs, load average {load_before:.1f} at the start, {_load():.1f} at the end"
    print("nbflow benchmarks: " + ", ".join(f"{TITLES[fw]} {v}" for fw, v in versions.items()))
    print(f"{machine}; `python -c pass` takes {baseline:.0f} ms; N = {sizes.n:,}"
          + (" (--quick: small N, not a measurement)" if args.quick else ""))
    print("Per-task figures: (flow with N tasks - empty flow) / N. Ratios: peer / nbflow "
          "(above 1: nbflow is faster or smaller).")
    print()
    print(render(bench.rows))
    for tb in bench.tracebacks:
        print("\n" + tb, file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "versions": versions, "machine": machine, "python_startup_ms": baseline,
            "quick": args.quick, "sizes": sizes.__dict__, "rows": [r.to_json() for r in bench.rows],
        }, indent=2))
    return 1 if any(r.error for r in bench.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
