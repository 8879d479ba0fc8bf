"""Ctrl-C during a flow: the run ends Cancelled, on_cancellation runs, the interrupt propagates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from nbflow import flow, task

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from nbflow import flow, task

    @task
    def slow():
        print("READY", flush=True)  # the interrupt must land in the task body: say when we are there
        for _ in range(600):  # short sleeps: a signal that lands just before a sleep starts is seen
            time.sleep(0.05)  # when it ends (Python checks for signals between calls, not during one)

    @task
    def later():
        return 1

    def hook(flow, flow_run, state):
        print("HOOK", state.name, flush=True)

    @flow(on_cancellation=[hook])
    def pipeline():
        pending = [later.submit() for _ in range(3)]
        slow()

    try:
        pipeline()
    except KeyboardInterrupt:
        print("RAISED KeyboardInterrupt", flush=True)
        sys.exit(7)
    """
)


def test_sigint_during_a_flow_cancels_it_and_re_raises(tmp_path):
    env = {**os.environ, "NBFLOW_HOME": str(tmp_path / "home"), "NBFLOW_STORE_ENABLED": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 7, err
    assert "HOOK Cancelled" in out and "RAISED KeyboardInterrupt" in out
    assert "Task run 'slow' - Finished in state Cancelled('Task run was interrupted')" in err
    assert "Finished in state Cancelled('Flow run was interrupted')" in err


def test_keyboard_interrupt_from_a_task_cancels_the_flow(harness):
    cancelled = []

    @task
    def interrupted():
        raise KeyboardInterrupt  # a deliberately injected fault, as Ctrl-C would raise

    @flow(on_cancellation=[lambda f, r, s: cancelled.append(s.name)])
    def pipeline():
        interrupted()

    with pytest.raises(KeyboardInterrupt):
        pipeline()
    assert cancelled == ["Cancelled"]
    assert harness.recorder.states("interrupted")[-1] == "Cancelled"


WAITING_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from nbflow import flow, task
    from nbflow.concurrency import limits

    limits.create("db", 0)  # nothing may run: the task waits for a slot

    @task(tags=["db"])
    def guarded():
        return 1

    @flow
    def pipeline():
        future = guarded.submit()
        deadline = time.monotonic() + 60
        while not (future.state.message or "").startswith("Waiting") and time.monotonic() < deadline:
            time.sleep(0.01)  # until the task run is queued for its slot (its state says so)
        print("READY", flush=True)
        future.result()

    try:
        pipeline()
    except KeyboardInterrupt:
        sys.exit(7)
    """
)


def test_interrupt_while_a_task_waits_for_a_slot_ends_it_cancelled(tmp_path):
    env = {**os.environ, "NBFLOW_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-c", WAITING_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 7, err
    assert "Task run 'guarded' - Finished in state Cancelled('Task run was interrupted')" in err


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_nbflow_threads_leave_interrupts_to_the_main_thread(harness):
    # A process's signal may go to any thread that does not block it; Python handles it only in the
    # main thread, so a Ctrl-C landing on a worker would wait for the main thread's call to return.
    @task
    def blocked() -> set:
        return signal.pthread_sigmask(signal.SIG_BLOCK, [])

    @flow
    def pipeline() -> tuple:
        return blocked.submit().result(), blocked()

    on_worker, on_caller = pipeline()
    assert {signal.SIGINT, signal.SIGTERM} <= on_worker
    assert signal.SIGINT not in on_caller  # the flow's own thread (here the main one) is untouched
