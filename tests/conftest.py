"""Shared fixtures: every test gets its own NBFLOW_HOME and, where asked, its own runtime."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator

import pytest

# Before anything builds the process-wide default runtime: never touch the real ~/.nbflow.
os.environ["NBFLOW_HOME"] = tempfile.mkdtemp(prefix="nbflow-test-home-")

from nbflow._core.clock import FakeClock  # noqa: E402
from nbflow._core.events import EdgesAdded, Event, LogEmitted, RunCreated, StateChanged  # noqa: E402
from nbflow._core.settings import Settings  # noqa: E402
from nbflow._engine.runtime import Runtime, use_runtime  # noqa: E402


class Recorder:
    """A run-event subscriber that keeps every event, for assertions."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def states(self, run_name: str) -> list[str]:
        """The states a run went through, its first (announced with the run) included."""
        return [e.state.name for e in self.events
                if isinstance(e, (RunCreated, StateChanged)) and e.run.name == run_name and e.state is not None]

    def runs(self, kind: str) -> list:
        return [e.run for e in self.events if isinstance(e, RunCreated) and e.run.kind == kind]

    def edges(self) -> list[tuple[str, str]]:
        """``(upstream_id, downstream_id)`` pairs, in the order found."""
        return [(up, e.downstream_id) for e in self.events if isinstance(e, EdgesAdded) for up in e.upstream_ids]

    def logs(self) -> list[LogEmitted]:
        """Every log line, the closing lines that final states stand for included."""
        return [e.closing_line() if isinstance(e, StateChanged) else e for e in self.events
                if isinstance(e, LogEmitted) or (isinstance(e, StateChanged) and e.closing_at is not None)]


class Harness:
    """A runtime with a temp home, a recorder and a captured console."""

    def __init__(self, home: str, clock: FakeClock | None) -> None:
        self.recorder = Recorder()
        self.console_text = io.StringIO()
        self.clock = clock
        self.runtime = Runtime(Settings(home=home, store_enabled=False), clock=clock, subscribers=(self.recorder,))
        assert self.runtime.console is not None
        self.runtime.console._stream = self.console_text

    @property
    def console(self) -> str:
        return self.console_text.getvalue()


@pytest.fixture
def harness(tmp_path) -> Iterator[Harness]:
    """Real time; store off; events recorded; console captured."""
    h = Harness(str(tmp_path / "home"), None)
    with use_runtime(h.runtime):
        yield h


@pytest.fixture
def fake_time(tmp_path) -> Iterator[Harness]:
    """Like ``harness`` but sleeps are instant and recorded (retry and backoff timing)."""
    h = Harness(str(tmp_path / "home"), FakeClock())
    with use_runtime(h.runtime):
        yield h


@pytest.fixture
def h(tmp_path) -> Iterator[object]:
    """A runtime with a real result cache in a temp home (see ``cache_support.CacheHarness``)."""
    from cache_support import CacheHarness

    with CacheHarness(tmp_path / "home") as harness:
        yield harness
