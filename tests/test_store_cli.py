"""``nbflow flow-run ls / inspect / logs [--follow] / delete`` and ``nbflow runs prune``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from store_support import nbflow, recording, script, start, wait_for

from nbflow import flow, get_run_logger, task
from nbflow._core.clock import FakeClock
from nbflow.cli import main


@task
def square(x: int) -> int:
    return x * x


@flow(flow_run_name="squares-{n}")
def squares(n: int) -> int:
    get_run_logger().warning("about to square %d numbers", n)
    return sum(f.result() for f in square.map(range(n)))


@flow(flow_run_name="broken")
def broken() -> None:
    raise ValueError("nope")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home with three runs: squares-3, broken (failed), squares-4 (newest)."""
    home = tmp_path / "home"
    with recording(home):
        squares(3)
        broken(return_state=True)
        squares(4)
    return home


def test_ls_shows_runs_newest_first_and_filters(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with recording(home):
        code, out, _ = cli(capsys, "flow-run", "ls")
        assert code == 0
        lines = out.splitlines()
        assert lines[0].split() == ["ID", "NAME", "FLOW", "STATE", "STARTED", "DURATION"]
        assert [line.split()[1] for line in lines[1:]] == ["squares-4", "broken", "squares-3"]
        assert "Failed" in lines[2] and "Completed" in lines[1]
        _, out, _ = cli(capsys, "flow-run", "ls", "--state", "failed")
        assert [line.split()[1] for line in out.splitlines()[1:]] == ["broken"]
        _, out, _ = cli(capsys, "flow-run", "ls", "--flow", "squares", "--limit", "1", "--json")
        [only] = json.loads(out)
        assert only["name"] == "squares-4" and only["state"]["type"] == "COMPLETED" and len(only["id"]) == 32
        _, out, _ = cli(capsys, "flow-run", "ls", "--flow", "nope")
        assert out == "No flow runs of flow 'nope'.\n"


def test_inspect_by_name_or_id_prefix(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with recording(home):
        code, out, _ = cli(capsys, "flow-run", "inspect", "squares-3")
        assert code == 0
        assert "Parameters: {\"n\": 3}" in out and "State:      Completed()" in out
        assert "Task runs: 3 (3 Completed)" in out and "square-3" in out
        run_id = out.split("(", 1)[1].split(")", 1)[0]
        _, again, _ = cli(capsys, "flow-run", "inspect", run_id[:7], "--json")
        graph = json.loads(again)
        assert graph["flow_run"]["id"] == run_id and len(graph["task_runs"]) == 3
        assert [s["name"] for s in graph["flow_run"]["history"]] == ["Pending", "Running", "Completed"]


def test_logs_print_the_run_and_task_lines(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with recording(home):
        code, out, _ = cli(capsys, "flow-run", "logs", "squares-4")
        assert code == 0
        assert "WARNING | Flow run 'squares-4' - about to square 4 numbers" in out
        assert "INFO    | Task run 'square-2' - Finished in state Completed()" in out
        _, out, _ = cli(capsys, "flow-run", "logs", "squares-4", "--level", "warning")
        assert out.count("\n") == 1
        _, out, _ = cli(capsys, "flow-run", "logs", "broken", "--json")
        expected = "Finished in state Failed('Flow run encountered an exception: ValueError: nope')"
        assert json.loads(out.splitlines()[-1])["message"] == expected


def test_bad_ids_and_arguments_are_one_line_errors(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with recording(home):
        code, out, err = cli(capsys, "flow-run", "inspect", "no-such-run")
        assert code == 2 and out == "" and err.startswith("nbflow: error: No flow run has the id")
        assert err.count("\n") == 1
        code, _, err = cli(capsys, "runs", "prune", "--older-than", "soon")
        assert code == 2 and "--older-than" in err and "90s, 30m" in err
        with pytest.raises(SystemExit) as exit_info:
            main(["flow-run", "ls", "--limit", "0"])
        assert exit_info.value.code == 2


def test_delete_removes_a_run_and_prune_removes_old_ones(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with recording(home, clock=FakeClock(time.time() - 40 * 86400)):
        squares(2)  # a run from 40 days ago
    with recording(home):
        code, out, _ = cli(capsys, "flow-run", "delete", "broken")
        assert code == 0 and out.startswith("Deleted flow run 'broken'")
        assert cli(capsys, "flow-run", "inspect", "broken")[0] == 2
        code, out, _ = cli(capsys, "runs", "prune", "--older-than", "30d")
        assert code == 0 and out == "Deleted 1 finished flow run created more than 30d ago.\n"
        _, out, _ = cli(capsys, "flow-run", "ls")
        assert [line.split()[1] for line in out.splitlines()[1:]] == ["squares-4", "squares-3"]


FOLLOWED = """
import sys, time
from pathlib import Path
from nbflow import flow, get_run_logger, task

@task
def step(i: int) -> int:
    return i

@flow(flow_run_name="followed")
def talk() -> None:
    logger = get_run_logger()
    for i in range(5):
        if i == 2:
            while not Path(sys.argv[1]).exists():  # the follower is attached: go on
                time.sleep(0.01)
        logger.info("line %d", i)
        step(i)  # its closing line is kept in its task run's row, not in logs
        time.sleep(0.05)

talk()
"""


@pytest.mark.slow  # another process
def test_logs_follow_prints_lines_of_a_run_in_another_process_until_it_ends(tmp_path: Path) -> None:
    home, attached = tmp_path / "home", tmp_path / "attached"
    talker = start([str(script(tmp_path / "talk.py", FOLLOWED)), str(attached)], home)
    follower = None
    try:
        wait_for(lambda: nbflow(home, "flow-run", "ls").stdout.count("followed"), what="the run to be stored")
        follower = start(["-m", "nbflow", "flow-run", "logs", "followed", "--follow"], home)
        time.sleep(0.3)  # the follower is reading: let the run go on and end
        attached.touch()
        out, err = follower.communicate(timeout=120)
        assert follower.returncode == 0, err
    finally:
        attached.touch()
        talker.communicate(timeout=120)
        if follower is not None and follower.poll() is None:
            follower.kill()
    lines = [line.split(" | ", 2)[2] for line in out.splitlines()]
    steps = [f"Task run '{'step' if i == 0 else f'step-{i + 1}'}' - Finished in state Completed()" for i in range(5)]
    assert lines == ["Flow run 'followed' - Created flow run 'followed' for flow 'talk'",
                     *[line for i in range(5) for line in (f"Flow run 'followed' - line {i}", steps[i])],
                     "Flow run 'followed' - Finished in state Completed()"]


@pytest.mark.slow  # another process
def test_delete_refuses_a_running_run(tmp_path: Path) -> None:
    home, release = tmp_path / "home", tmp_path / "release"
    holder = start([str(script(tmp_path / "hold.py", f"""
        import time
        from pathlib import Path
        from nbflow import flow

        @flow(flow_run_name="holding")
        def hold() -> None:
            while not Path({str(release)!r}).exists():
                time.sleep(0.01)

        hold()
        """))], home)
    try:
        wait_for(lambda: "Running" in nbflow(home, "flow-run", "ls").stdout, what="the run to be running")
        done = nbflow(home, "flow-run", "delete", "holding")
        assert done.returncode == 2 and "is Running" in done.stderr
    finally:
        release.touch()
        holder.communicate(timeout=120)
    assert nbflow(home, "flow-run", "delete", "holding").returncode == 0
