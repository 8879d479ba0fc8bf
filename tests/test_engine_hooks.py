"""State hooks on flows and tasks; a hook that raises is logged and changes nothing."""

from __future__ import annotations

import pytest

from nbflow import flow, task


def recorder(calls, label):
    def hook(obj, run, state):
        calls.append((label, obj.name, run.name, state.name))
    return hook


def test_flow_and_task_hooks_get_object_run_and_state(harness):
    calls = []

    @task(on_completion=[recorder(calls, "task ok")], on_failure=[recorder(calls, "task failed")])
    def step(fail):
        if fail:
            raise ValueError("no")
        return 1

    @flow(on_completion=[recorder(calls, "flow ok")], on_failure=[recorder(calls, "flow failed")])
    def pipeline(fail_flow: bool):
        step(False)
        step(True, return_state=True)
        if fail_flow:
            raise RuntimeError("flow fails")

    pipeline(False)
    run_name = harness.recorder.runs("flow")[0].name
    assert calls == [
        ("task ok", "step", "step", "Completed"),
        ("task failed", "step", "step-2", "Failed"),
        ("flow ok", "pipeline", run_name, "Completed"),
    ]
    calls.clear()
    with pytest.raises(RuntimeError):
        pipeline(True)
    assert calls[-1][0] == "flow failed"


def test_a_hook_that_raises_is_logged_and_never_changes_the_state(harness):
    def broken(flow, flow_run, state):
        raise KeyError("hook bug")

    after = []

    @flow(on_completion=[broken, lambda f, r, s: after.append(s.name)])
    def pipeline():
        return 42

    assert pipeline() == 42
    assert after == ["Completed"]  # later hooks still run
    assert "An error was encountered while running hook 'broken': KeyError('hook bug')" in harness.console
    assert harness.recorder.runs("flow")[0].state.is_completed()


def test_on_crashed_runs_for_a_base_exception(harness):
    crashed = []

    @flow(on_crashed=[lambda f, r, s: crashed.append(s.name)])
    def pipeline():
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        pipeline()
    assert crashed == ["Crashed"]


def test_hooks_must_be_callables():
    with pytest.raises(TypeError, match="on_failure must be a list of callables"):
        flow(on_failure=["not callable"])(lambda: None)


def test_a_task_runs_closing_line_comes_last_with_or_without_hooks(harness):
    def broken(task, task_run, state):
        raise KeyError("hook bug")

    @task(on_completion=[broken])
    def hooked() -> int:
        return 1

    @task
    def plain() -> int:
        return 2

    @flow
    def pipeline() -> int:
        return hooked() + plain()

    assert pipeline() == 3
    lines = harness.console.splitlines()
    hooked_lines = [line.split(" - ", 1)[1] for line in lines if "Task run 'hooked'" in line]
    assert hooked_lines[0].startswith("An error was encountered while running hook 'broken'")
    assert hooked_lines[-1] == "Finished in state Completed()"
    assert [line.split(" - ", 1)[1] for line in lines if "Task run 'plain'" in line] == ["Finished in state Completed()"]
    # One event for the final state and the closing line without hooks; with hooks the line follows them.
    assert [m.message for m in harness.recorder.logs() if m.run.name == "plain"] == ["Finished in state Completed()"]
    finals = [e for e in harness.recorder.events if getattr(e, "closing_at", None) is not None]
    assert [e.run.name for e in finals] == ["plain"]
