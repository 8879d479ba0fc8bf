"""Cost of the live run monitor: a 10,000-task flow in a real kernel, monitor on vs off.

Run: ``python benchmarks/monitor.py [--tasks N] [--pairs P]``; ``run()`` returns rows for compare.py.

- The kernel is a real ipykernel started with jupyter_client, with ``%load_ext nbflow`` as in a
  notebook; this process plays the front-end and counts every widget message that reaches it on
  IOPub (what Jupyter's rate limiter sees).
- Each measured cell calls a decorated flow, as a user's cell does. "on": the notebook session shows
  a monitor under the cell. "off": the same call inside ``no_monitor()``. The time is the whole cell,
  from IPython's ``pre_run_cell`` to ``post_run_cell``, so it includes the monitor's final picture
  sent when the cell ends. The cell prints only warnings in both modes (console level WARNING; the
  monitor and the run store still get every line), so the ratio is the monitor's own cost, not that
  of 10,000 printed lines.
- Runs come in pairs, on and off back to back, the order swapped every pair so that a slow spell of
  the machine falls on both modes alike; one untimed warm-up of each first. Between cells (untimed)
  the kernel waits until the last monitor has published and let go of its run, and collects garbage,
  so no cell pays for the one before it.
- The headline ratio is the median of the pairs' on/off ratios (robust to a neighbour's burst that
  hits a single run); the note adds best-of-N on / best-of-N off (as ``timeit``: the least disturbed
  runs) and the ratio of the medians.
- Targets (issue 6): on/off ≤ 1.1; widget messages < 100 per second of run time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

SETUP = r"""
import sys
sys.path.insert(0, {root!r})
%load_ext nbflow
import gc, json, logging, time
from nbflow import flow, task
from nbflow._engine.runtime import get_runtime
from nbflow.jupyter import no_monitor
from nbflow.jupyter._session import active_session

get_runtime().console.level = logging.WARNING  # see the module docstring: the same in both modes

@task
def inc(x):
    return x + 1

@task
def total(xs):
    return sum(xs)

@flow(name="bench-monitor")
def big(n):
    futures = [inc.submit(i) for i in range(n)]
    return total(futures)

_cell = {{"start": time.perf_counter()}}
get_ipython().events.register("pre_run_cell", lambda info: _cell.update(start=time.perf_counter()))
get_ipython().events.register("post_run_cell", lambda result: _cell.update(seconds=time.perf_counter() - _cell["start"]))

def report():
    session = active_session()
    run = session.recent[-1]
    m = session.monitor_of(run.id)
    out = {{"seconds": _cell["seconds"], "state": run.state.name}}
    if m is not None:
        out.update(messages=m.messages_sent, comm_id=m.comm.comm_id if m.comm else None, finished=m.finished,
                   released=m.wait(60))  # the monitor's after-work is done before the next timed cell
    gc.collect()
    print("BENCH " + json.dumps(out))
"""

ON = "state = big({n}, return_state=True)"
OFF = "with no_monitor():\n    state = big({n}, return_state=True)"


def _execute(kc: Any, code: str, timeout: float = 600) -> tuple[str, list[dict[str, Any]]]:
    """Run ``code``; return its stdout and every IOPub message seen until the kernel went idle."""
    msg_id = kc.execute(code)
    stdout: list[str] = []
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(1.0, deadline - time.monotonic()))
        seen.append(msg)
        parent = msg.get("parent_header", {}).get("msg_id")
        kind = msg["msg_type"]
        if kind == "stream" and msg["content"]["name"] == "stdout" and parent == msg_id:
            stdout.append(msg["content"]["text"])
        elif kind == "error" and parent == msg_id:
            raise RuntimeError("\n".join(msg["content"]["traceback"]))
        elif kind == "status" and msg["content"]["execution_state"] == "idle" and parent == msg_id:
            return "".join(stdout), seen


def _bench(kc: Any, n: int, monitor: bool) -> dict[str, Any]:
    _, seen = _execute(kc, (ON if monitor else OFF).format(n=n))
    out, _ = _execute(kc, "report()")
    line = next(row for row in out.splitlines() if row.startswith("BENCH "))
    result = json.loads(line[6:])
    if monitor:
        if not result.get("finished"):
            raise RuntimeError("the monitor had not sent its final picture when the cell ended")
        if not result.get("released"):
            raise RuntimeError("the monitor did not finish its work within 60 s of the cell's end")
        comm_id = result.get("comm_id")
        comm = [m for m in seen if m["msg_type"] == "comm_msg" and m["content"].get("comm_id") == comm_id]
        result["iopub_messages"] = len(comm)
        result["iopub_bytes"] = sum(len(json.dumps(m["content"])) for m in comm)
    elif "comm_id" in result:
        raise RuntimeError("a monitor was shown inside no_monitor()")
    return result


def measure(tasks: int = 10_000, pairs: int = 21) -> dict[str, Any]:
    from jupyter_client.manager import start_new_kernel

    home = tempfile.mkdtemp(prefix="nbflow-bench-monitor-")
    env = dict(os.environ, NBFLOW_HOME=home)
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        _execute(kc, SETUP.format(root=str(ROOT)))
        _bench(kc, min(tasks, 1000), False)  # warm-up: imports, thread pools, first widget
        _bench(kc, min(tasks, 1000), True)
        off: list[dict[str, Any]] = []
        on: list[dict[str, Any]] = []
        for i in range(pairs):
            for monitor in (False, True) if i % 2 == 0 else (True, False):
                (on if monitor else off).append(_bench(kc, tasks, monitor))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    off_s, on_s = [r["seconds"] for r in off], [r["seconds"] for r in on]
    ratios = [b / a for a, b in zip(off_s, on_s)]
    rates = [r["iopub_messages"] / r["seconds"] for r in on]
    if os.environ.get("NBFLOW_BENCH_VERBOSE"):
        for a, b in zip(off_s, on_s):
            print(f"  off {a:.3f}  on {b:.3f}  ratio {b / a:.3f}")
    return {
        "tasks": tasks,
        "pairs": pairs,
        "off_best": min(off_s),
        "on_best": min(on_s),
        "off_median": statistics.median(off_s),
        "on_median": statistics.median(on_s),
        "ratio": statistics.median(ratios),
        "best_ratio": min(on_s) / min(off_s),
        "median_ratio": statistics.median(on_s) / statistics.median(off_s),
        "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)] if pairs >= 4 else None,
        "messages_per_second": statistics.median(rates),
        "messages_per_run": statistics.median(r["iopub_messages"] for r in on),
        "kilobytes_per_run": statistics.median(r["iopub_bytes"] for r in on) / 1000,
        "states": sorted({r["state"] for r in off + on}),
    }


def run() -> list[dict[str, Any]]:
    quick = os.environ.get("NBFLOW_BENCH_QUICK") == "1"
    result = measure(tasks=1000 if quick else 10_000, pairs=2 if quick else 21)
    n = f"{result['tasks']:,}"
    return [
        {"workload": f"{n}-task flow in a kernel, monitor on / off", "unit": "×",
         "nbflow": round(result["ratio"], 3), "target": "≤ 1.1", "target_max": 1.1, "note": _summary(result)},
        {"workload": f"{n}-task flow: widget messages per second", "unit": "msg/s",
         "nbflow": round(result["messages_per_second"], 1), "target": "< 100", "target_max": 100,
         "note": f"{result['messages_per_run']:.0f} messages, {result['kilobytes_per_run']:.0f} kB per run"},
    ]


def _summary(r: dict[str, Any]) -> str:
    spread = f" (quartiles {', '.join(map(str, r['ratio_quartiles']))})" if r["ratio_quartiles"] else ""
    return (f"median of {r['pairs']} paired runs{spread}; "
            f"best of {r['pairs']}: off {r['off_best']:.2f} s, on {r['on_best']:.2f} s ({r['best_ratio']:.3f}×); "
            f"medians: off {r['off_median']:.2f} s, on {r['on_median']:.2f} s ({r['median_ratio']:.3f}×)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=21, help="on/off pairs of timed runs (default 21)")
    parser.add_argument("--json", help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.pairs < 1:
        parser.error("--tasks and --pairs take a positive number")
    result = measure(args.tasks, args.pairs)
    print(f"{result['tasks']:,} tasks, {result['pairs']} on/off pairs, in a real kernel")
    print(f"  monitor on / off: {result['ratio']:.3f}  (target ≤ 1.1)")
    print(f"  {_summary(result)}")
    print(f"  widget messages: {result['messages_per_second']:.1f}/s  ({result['messages_per_run']:.0f} per run, "
          f"{result['kilobytes_per_run']:.0f} kB)  (target < 100/s)")
    print(f"  final states: {', '.join(result['states'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result["ratio"] <= 1.1 and result["messages_per_second"] < 100 else 1


if __name__ == "__main__":
    sys.exit(main())
