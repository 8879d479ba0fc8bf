"""Run logs: the console line shape, run names, get_run_logger, log_prints."""

from __future__ import annotations

import re
import threading

import pytest

from nbflow import flow, get_run_logger, task
from nbflow.exceptions import MissingContextError

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| (INFO |WARNING|ERROR|DEBUG) *\| (Flow|Task) run '[^']+' - .+$")


def test_console_lines_have_prefects_shape_and_engine_lines(harness):
    @task
    def fetch_data():
        get_run_logger().warning("careful")
        return 1

    @flow(name="My Pipeline")
    def pipeline():
        return fetch_data()

    pipeline()
    lines = harness.console.splitlines()
    assert lines and all(LINE.match(line) for line in lines), lines
    run_name = harness.recorder.runs("flow")[0].name
    assert re.fullmatch(r"[a-z]+-[a-z]+", run_name)  # adjective-animal
    assert f"| INFO    | Flow run '{run_name}' - Created flow run '{run_name}' for flow 'My Pipeline'" in lines[0]
    assert "| WARNING | Task run 'fetch_data' - careful" in harness.console
    assert "| INFO    | Task run 'fetch_data' - Finished in state Completed()" in harness.console
    assert lines[-1].endswith(f"Flow run '{run_name}' - Finished in state Completed()")


def test_subflow_is_a_linked_run_and_logged(harness):
    @flow
    def transform():
        return "t"

    @flow
    def parent():
        return transform()

    assert parent() == "t"
    outer, inner = harness.recorder.runs("flow")
    assert inner.parent_flow_run_id == outer.id and inner.id != outer.id
    assert f"Flow run '{outer.name}' - Created subflow run '{inner.name}' for flow 'transform'" in harness.console


def test_flow_run_name_template(harness):
    @flow(flow_run_name="etl-{day}")
    def etl(day: str):
        return day

    etl("monday")
    assert harness.recorder.runs("flow")[0].name == "etl-monday"
    with pytest.raises(ValueError, match=r"refers to 'nope', which is not a parameter; available: day"):
        etl.with_options(flow_run_name="x-{nope}")("tuesday")


def test_get_run_logger_outside_a_run_says_what_to_use():
    with pytest.raises(MissingContextError, match=r"logging.getLogger"):
        get_run_logger()


def test_log_prints_catches_this_runs_prints_only(harness, capsys):
    other_ready = threading.Event()
    other_go = threading.Event()

    def other_thread():
        other_ready.set()
        other_go.wait(5)
        print("from another thread")

    thread = threading.Thread(target=other_thread)
    thread.start()

    @task
    def quiet_task():
        print("task print without log_prints")

    @flow(log_prints=True)
    def pipeline():
        print("hello from the flow")
        other_ready.wait(5)
        other_go.set()
        thread.join()
        quiet_task.with_options(log_prints=False)()

    pipeline()
    out = capsys.readouterr().out
    assert "Flow run" in harness.console and "- hello from the flow" in harness.console
    assert "hello from the flow" not in out
    assert "from another thread" in out and "from another thread" not in harness.console
    assert "task print without log_prints" in out
    print("after the run")
    assert "after the run" in capsys.readouterr().out


def test_log_level_setting_hides_lower_lines(tmp_path):
    import io

    from nbflow._core.settings import Settings
    from nbflow._engine.runtime import Runtime, use_runtime

    runtime = Runtime(Settings(home=tmp_path, store_enabled=False, logging_level="WARNING"))
    runtime.console._stream = stream = io.StringIO()

    @flow
    def pipeline():
        get_run_logger().info("info line")
        get_run_logger().error("error line")

    with use_runtime(runtime):
        pipeline()
    assert "error line" in stream.getvalue()
    assert "info line" not in stream.getvalue() and "Finished in state" not in stream.getvalue()


def test_logged_tracebacks_show_the_users_frames_not_the_engines(harness):
    @task
    def divide(x):
        return 1 / x

    @flow
    def pipeline():
        divide(0, return_state=True)

    pipeline()
    error_lines = [e.message for e in harness.recorder.logs() if e.level >= 40]
    assert len(error_lines) == 1
    trace = error_lines[0]
    assert "ZeroDivisionError: division by zero" in trace and "return 1 / x" in trace
    assert "_engine.py" not in trace and "_task_engine.py" not in trace
