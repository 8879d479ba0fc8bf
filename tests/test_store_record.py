"""What a run leaves in the store, read back through ``nbflow.runs``: runs, states, logs, edges,
parameters, and what the caller of a flow can count on when the call returns."""

from __future__ import annotations

import contextvars
import gc
import logging
import os
import socket
import threading
import time
import weakref
from pathlib import Path

import pytest
from store_support import db, recording, wait_for

import nbflow.runs as runs
from nbflow import flow, get_run_logger, task
from nbflow._core.clock import FakeClock
from nbflow._engine.runtime import get_runtime
from nbflow._services.store.models import FlowRunRecord, LogRecord, StateRecord, TaskRunRecord
from nbflow._services.store.render import MAX_PICKLE_BYTES
from nbflow._services.store.writer import FLOW_END_WAIT_S
from nbflow.exceptions import ParametersNotStoredError, RunNotFoundError


@task
def double(x: int) -> int:
    get_run_logger().info("doubling %s", x)
    return 2 * x


@task
def add(a: int, b: int) -> int:
    return a + b


attempts: list[int] = []


@task(retries=1, retry_delay_seconds=0)
def flaky() -> None:
    attempts.append(1)
    raise ValueError("flaky says no")


@flow
def child(x: int) -> int:
    return double(x)


@flow(log_prints=True)
def pipeline(n: int, label: str = "demo") -> int:
    a = double.submit(n)
    b = double.submit(n + 1)
    total = add.submit(a, b)
    print("printed from the flow")
    child(n)
    flaky.submit().wait()
    return total.result()


def test_a_flow_run_is_recorded_with_its_task_runs_states_logs_and_edges(tmp_path: Path) -> None:
    with recording(tmp_path / "home"):
        assert pipeline(3) == 14
        run = runs.flow_runs(flow_name="pipeline")[0]
        tasks = {t.name: t for t in runs.task_runs(run.id)}
        lines = runs.logs(run.id)
        graph = runs.graph(run.id)
        sub = runs.flow_runs(flow_name="child")[0]
    assert run.state_name == "Completed" and run.parameters == {"n": 3, "label": "demo"}
    assert run.pid == os.getpid() and run.host == socket.gethostname() and run.run_count == 1
    assert run.start_time is not None and run.end_time is not None and run.start_time <= run.end_time
    assert [s.name for s in run.history] == ["Pending", "Running", "Completed"]
    assert set(tasks) == {"double", "double-2", "add", "flaky"}
    assert tasks["add"].state_name == "Completed" and tasks["add"].run_count == 1
    assert tasks["flaky"].run_count == 2
    assert [s.name for s in tasks["flaky"].history] == ["Pending", "Running", "Retrying", "Failed"]
    assert "flaky says no" in (tasks["flaky"].state_message or "")
    assert sorted(graph.edges) == sorted([(tasks["double"].id, tasks["add"].id), (tasks["double-2"].id, tasks["add"].id)])
    assert [r.id for r in graph.subflow_runs] == [sub.id]
    text = [line.format() for line in lines]
    assert any("Task run 'double' - doubling 3" in t for t in text)
    assert any(f"Flow run '{run.name}' - printed from the flow" in t for t in text)
    assert text[-1].endswith(f"Flow run '{run.name}' - Finished in state Completed()")
    assert [line.message for line in lines if line.task_run_id == tasks["double-2"].id] == [
        "doubling 4", "Finished in state Completed()"]


def test_the_run_is_committed_when_the_flow_call_returns(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with recording(home):
        pipeline(1)
        # Another program's connection: no flush on our side, only what is committed.
        with db(home) as conn:
            states = conn.execute("SELECT flow_name, state_type FROM flow_runs ORDER BY flow_name").fetchall()
            tasks = conn.execute("SELECT count(*) FROM task_runs WHERE state_type IS NOT NULL").fetchone()[0]
            last = conn.execute("SELECT message FROM logs ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert states == [("child", "COMPLETED"), ("pipeline", "COMPLETED")]
    assert tasks == 5
    assert last == "Finished in state Completed()"


@pytest.mark.slow  # waits out a held lock: seconds by design
def test_a_locked_store_delays_a_flow_call_a_few_seconds_at_most(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with recording(home) as runtime:
        pipeline(1)
        runtime.store.flush()
        with db(home) as blocker:
            blocker.execute("BEGIN IMMEDIATE")  # another program holds the write lock
            started = time.monotonic()
            pipeline(2)
            returned_after = time.monotonic() - started
            blocker.rollback()
        # Written once the lock is free: a reader in this process waits for it.
        assert [r.state_name for r in runs.flow_runs(flow_name="pipeline")] == ["Completed", "Completed"]
    assert returned_after < FLOW_END_WAIT_S + 3  # not the minute a flush waits for


def test_a_subflow_knows_its_parent_and_top_level_lists_leave_it_out(tmp_path: Path) -> None:
    with recording(tmp_path / "home"):
        pipeline(2)
        parent = runs.flow_runs(flow_name="pipeline")[0]
        sub = runs.flow_runs(flow_name="child")[0]
        top = runs.flow_runs(top_level=True)
    assert sub.parent_flow_run_id == parent.id
    assert [r.id for r in top] == [parent.id]


def test_stored_log_lines_follow_the_logging_level(tmp_path: Path) -> None:
    @flow
    def chatty() -> None:
        logger = get_run_logger()
        logger.info("just so you know")
        logger.warning("careful")
        double(1)  # its closing line is INFO too: not kept

    with recording(tmp_path / "home", logging_level="WARNING"):
        chatty()
        lines = runs.logs(runs.flow_runs()[0].id)
    assert [(line.level, line.message) for line in lines] == [(logging.WARNING, "careful")]


def test_a_task_runs_closing_line_is_kept_in_its_row_and_read_back_in_place(tmp_path: Path) -> None:
    home = tmp_path / "home"

    @task(on_completion=[lambda t, r, s: get_run_logger().info("hooked")])
    def with_hook() -> int:
        return 1

    @task
    def plain(x: int) -> int:
        get_run_logger().info("plain says %s", x)
        return x

    @flow
    def mixed() -> int:
        first = plain(1)
        get_run_logger().info("between")
        return first + with_hook() + plain(2)

    with recording(home):
        assert mixed() == 4
        run = runs.flow_runs()[0]
        lines = runs.logs(run.id)
        tasks = {t.name: t for t in runs.task_runs(run.id)}
        only_plain = runs.logs(tasks["plain"].id)
    with db(home) as conn:
        stored = conn.execute("SELECT count(*) FROM logs WHERE message LIKE 'Finished in state%'").fetchone()[0]
        kept = dict(conn.execute("SELECT name, closing_at IS NOT NULL FROM task_runs").fetchall())
    assert stored == 2  # the flow run's and the hooked task run's, whose line follows its hook's
    assert kept == {"plain": 1, "with_hook": 0, "plain-2": 1}
    texts = [f"{line.run_name}: {line.message}" for line in lines if line.task_run_id or "Created" not in line.message]
    assert texts == [
        "plain: plain says 1", "plain: Finished in state Completed()", f"{run.name}: between",
        f"{run.name}: hooked", "with_hook: Finished in state Completed()",  # after its hook's lines
        "plain-2: plain says 2", "plain-2: Finished in state Completed()",
        f"{run.name}: Finished in state Completed()",
    ]
    assert [(line.id is None, line.message) for line in only_plain] == [
        (False, "plain says 1"), (True, "Finished in state Completed()")]  # kept in the row: no log id


def test_a_failed_task_runs_error_line_comes_before_its_closing_line(tmp_path: Path) -> None:
    @task
    def breaks() -> None:
        raise ValueError("broken on purpose")

    @flow
    def fails() -> None:
        breaks.submit().wait()

    with recording(tmp_path / "home"):
        fails()
        lines = runs.logs(runs.task_runs(runs.flow_runs()[0].id)[0].id)
    assert [line.message.split(":")[0] for line in lines] == [
        "Task run failed with exception", "Finished in state Failed('Task run encountered an exception ValueError"]


def test_parameters_are_shown_truncated_and_kept_whole_for_reruns(tmp_path: Path) -> None:
    @flow
    def takes(items: list, text: str) -> int:
        return len(items) + len(text)

    items, text = list(range(1000)), "x" * 5000
    with recording(tmp_path / "home"):
        takes(items, text)
        run = runs.flow_runs()[0]
        real = runs.load_parameters(run.id)
    assert run.parameters["items"][:3] == [0, 1, 2] and run.parameters["items"][-1] == "... 980 more"
    assert run.parameters["text"].endswith("... (5000 characters)") and len(run.parameters["text"]) < 300
    assert real == {"items": items, "text": text}


def test_unpicklable_parameters_say_why_they_cannot_be_rerun(tmp_path: Path) -> None:
    @flow(validate_parameters=False)
    def locked(lock: object) -> str:
        return "ok"

    with recording(tmp_path / "home"):
        locked(threading.Lock())
        run = runs.flow_runs()[0]
        with pytest.raises(ParametersNotStoredError, match="cannot be pickled"):
            runs.load_parameters(run.id)
    assert run.state_name == "Completed" and "lock" in run.parameters


def test_parameters_too_large_to_keep_say_so_and_the_run_goes_on(tmp_path: Path) -> None:
    @flow
    def sized(blob: bytes) -> int:
        return len(blob)

    big = b"x" * (MAX_PICKLE_BYTES + 1)
    with recording(tmp_path / "home"):
        assert sized(big) == len(big)
        run = runs.flow_runs()[0]
        with pytest.raises(ParametersNotStoredError, match=f"more than the {MAX_PICKLE_BYTES} bytes"):
            runs.load_parameters(run.id)
    assert run.parameters == {"blob": f"<bytes, {len(big)} bytes>"}


def test_flow_runs_are_found_by_id_prefix_or_name_and_filtered(tmp_path: Path) -> None:
    @flow(flow_run_name="nightly")
    def named(fail: bool) -> None:
        if fail:
            raise RuntimeError("boom")

    with recording(tmp_path / "home"):
        named(False)
        named(True, return_state=True)
        pipeline(1)
        first, second = runs.flow_runs(flow_name="named")[::-1]
        assert runs.flow_run(first.id[:10]).id == first.id
        assert runs.flow_run(first.id.upper()).id == first.id
        assert [r.id for r in runs.flow_runs(state="failed")] == [second.id]
        assert [r.id for r in runs.flow_runs(state="FAILED", flow_name="named")] == [second.id]
        assert len(runs.flow_runs(limit=2)) == 2
        with pytest.raises(RunNotFoundError, match="matches several flow runs"):
            runs.flow_run("nightly")
        with pytest.raises(RunNotFoundError, match="No flow run"):
            runs.flow_run("no-such-run")
        assert runs.flow_run(runs.flow_runs(flow_name="pipeline")[0].name).flow_name == "pipeline"


def test_records_are_what_validation_would_have_built(tmp_path: Path) -> None:
    with recording(tmp_path / "home"):
        pipeline(2)
        run = runs.flow_runs(flow_name="pipeline")[0]
        records = [run, *runs.task_runs(run.id), *runs.logs(run.id), runs.graph(run.id)]
    for record in records:
        data = record.model_dump()
        assert type(record).model_validate(data).model_dump() == data
        assert type(record).model_validate_json(record.model_dump_json()).model_dump() == data
    assert isinstance(run, FlowRunRecord) and isinstance(run.state, StateRecord)
    assert all(isinstance(r, (TaskRunRecord, LogRecord)) for r in records[1:-1])


def test_delete_and_prune_remove_runs_with_everything_under_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    old = FakeClock(time.time() - 40 * 86400)
    with recording(home, clock=old):
        pipeline(1)  # 40 days ago: a parent, a subflow, their task runs and logs
    with recording(home):
        pipeline(2)
        keep = runs.flow_runs(flow_name="pipeline")[0]
        assert len(runs.flow_runs(limit=None)) == 4
        assert runs.prune("30d") == 2
        assert {r.id for r in runs.flow_runs(limit=None)} == {keep.id, runs.flow_runs(flow_name="child")[0].id}
        assert runs.delete_flow_run(keep.name) == 2
        assert runs.flow_runs(limit=None) == []
    with db(home) as conn:
        for table in ("task_runs", "logs", "edges"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


def test_a_store_that_cannot_be_written_never_breaks_a_run(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    with recording(home):
        with db(home) as conn:
            conn.execute("DROP TABLE logs")  # someone else broke the database under us
        assert pipeline(2) == 10
        assert pipeline(3) == 14
    err = capfd.readouterr().err
    # Only the rows that need the missing table are lost, and said so (a few lines, not one per batch).
    assert "refused a log line" in err and "no such table: logs" in err and str(home / "nbflow.db") in err
    assert 1 <= err.count("nbflow:") <= 3
    with db(home) as conn:
        assert conn.execute("SELECT count(*) FROM flow_runs WHERE state_type = 'COMPLETED'").fetchone()[0] > 0


def test_a_task_run_whose_row_was_replaced_never_overwrites_the_new_row(tmp_path: Path) -> None:
    # The writer remembers the rowid of a task run that has not ended. If that row is deleted and its
    # rowid reused (here by another program, as a second nbflow process would), the task run's final
    # state must not land on the stranger's row.
    home = tmp_path / "home"
    release = threading.Event()

    @task
    def waiting() -> str:
        release.wait(60)
        return "done"

    @flow
    def holder() -> str:
        future = waiting.submit()
        runtime = get_runtime()
        wait_for(lambda: runtime.store.flush() and _task_states(home) == [("waiting", "RUNNING")], what="row")
        with db(home) as conn:  # the row goes, and a stranger's row takes its rowid
            (rowid,) = conn.execute("SELECT rowid FROM task_runs").fetchone()
            conn.execute("DELETE FROM task_runs")
            conn.execute(
                "INSERT INTO task_runs (rowid, id, flow_run_id, name, task_name, task_key, state_type)"
                " VALUES (?, 'stranger', 'other-flow', 'stranger', 'stranger', 'k', 'RUNNING')",
                (rowid,),
            )
        release.set()
        return future.result()

    with recording(home):
        assert holder() == "done"
    assert _task_states(home) == [("stranger", "RUNNING")]


def _task_states(home: Path) -> list[tuple[str, str]]:
    with db(home) as conn:
        return conn.execute("SELECT name, state_type FROM task_runs ORDER BY rowid").fetchall()


def test_a_task_input_is_freed_when_the_task_is_done_even_while_the_store_cannot_write(tmp_path: Path) -> None:
    # The store copies what it records when the event happens: it never keeps a task's inputs (a big
    # DataFrame, say) alive until its writer gets to them, even when another program holds the lock.
    home = tmp_path / "home"
    checked = threading.Event()

    class Frame:
        pass

    @task
    def size(frame: Frame) -> int:
        return 1

    @flow
    def uses_a_frame() -> bool:
        frame = Frame()
        freed = weakref.ref(frame)
        size.submit(frame).wait()
        del frame
        gc.collect()
        checked.set()
        return freed() is None

    with recording(home) as runtime:
        runtime.store.flush()
        with db(home) as blocker:
            blocker.execute("BEGIN IMMEDIATE")  # the writer cannot commit until this ends
            done: list[bool] = []
            context = contextvars.copy_context()  # the thread runs the flow with this test's runtime
            thread = threading.Thread(target=lambda: done.append(context.run(uses_a_frame)))
            thread.start()
            assert checked.wait(60)
            blocker.rollback()
            thread.join(60)
        assert done == [True]
        assert [t.state_name for t in runs.task_runs(runs.flow_runs()[0].id)] == ["Completed"]


def test_reading_records_leaves_the_collector_as_it_found_it(tmp_path: Path) -> None:
    with recording(tmp_path / "home"):
        pipeline(1)
        run_id = runs.flow_runs(flow_name="pipeline")[0].id
        assert gc.isenabled()
        runs.graph(run_id)
        runs.logs(run_id)
        assert gc.isenabled()  # paused while records are built, running again after
        gc.disable()
        try:
            runs.graph(run_id)
            assert not gc.isenabled()  # someone else's pause is theirs to end
        finally:
            gc.enable()
