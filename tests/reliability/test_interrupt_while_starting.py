"""An interrupt (``Interrupted``, raised asynchronously in a task's thread when its flow is cancelled)
never lands in a thread that the interrupted thread is starting.

CPython 3.11 files a new thread under its creator's id until the new thread runs: an interrupt sent
at that moment could land in the new thread, which then died before saying it started, and its
creator waited in ``Thread.start()`` forever. A Ctrl-C during a flow hung about one run in ten that
way (a task starting the cache writer as it finished).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

STARTER = textwrap.dedent(
    """
    import sys, threading, time
    from nbflow._core.threads import start_thread, starting
    from nbflow._engine.drive import Interrupted, interrupt_thread

    if sys.argv[1] == "unguarded":  # the old code, to show that this test can fail
        import contextlib, nbflow._core.threads as threads
        threads._starting = contextlib.nullcontext()

    ran, started, stop = [], [0], threading.Event()

    def starter():
        while not stop.is_set():
            try:
                with starting():
                    thread = threading.Thread(target=ran.append, args=(1,), daemon=True)
                    start_thread(thread)
                    started[0] += 1
            except Interrupted:
                pass

    worker = threading.Thread(target=starter, daemon=True)
    worker.start()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        interrupt_thread(worker)
        time.sleep(0.0002)
    stop.set()
    worker.join(5)
    print("hung" if worker.is_alive() else "ok", started[0], flush=True)
    """
)


def _run(mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", STARTER, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow  # a few seconds of interrupts
def test_a_thread_interrupted_while_it_starts_a_thread_never_hangs() -> None:
    out = _run("guarded")
    assert out.startswith("ok"), out
    assert int(out.split()[1]) > 100  # it really started threads while being interrupted


@pytest.mark.slow
def test_without_the_guard_the_same_interrupts_hang_the_starter() -> None:
    # The fault this guards against is real on this interpreter: unguarded, the starter hangs.
    hung = any(_run("unguarded").startswith("hung") for _ in range(3))
    assert hung
