"""``%load_ext nbflow``: the ``%%flow`` cell magic and the ``%flow`` line magics.

Imported by ``nbflow.load_ipython_extension`` only, so ``import nbflow`` never loads IPython.
"""

from __future__ import annotations

import contextlib
import inspect
import shlex
from collections.abc import Awaitable, Iterator
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser, argument, magic_arguments, parse_argstring

from nbflow._core.options import FlowOptions
from nbflow._engine.flow import Flow
from nbflow._engine.runtime import get_runtime
from nbflow.jupyter._cell_flow import CellFlow, await_transformer, cell_number, default_name
from nbflow.jupyter._session import NotebookSession, no_monitor
from nbflow.jupyter._tracebacks import user_error

__all__ = ["FlowMagics", "load_ipython_extension", "unload_ipython_extension"]

CELL_USAGE = (
    "%%flow [NAME] [--retries N] [--retry-delay S] [--timeout S] [--log-prints] [--no-monitor] "
    "[--task-runner threads|dask]"
)

HELP = f"""\
nbflow magics

  {CELL_USAGE}
      Run the cell as one flow run named NAME (default: the cell's leading comment, else its cell id).
      Tasks called in the cell are orchestrated; names it assigns land in the notebook; its last
      expression is shown; `await` works. A live monitor shows the run under the cell.

  %flow runs [--flow NAME] [-n 20]      the latest flow runs as a table (state, duration, run id)
  %flow rerun [RUN_ID|NAME]             run a flow again; unchanged tasks come from the cache
  %flow monitor [RUN_ID]                show a monitor of a flow run (also one of another process)
  %flow cache clear [--task NAME]       delete persisted task results
  %flow --help                          this help

RUN_ID may be the first characters of a run id, as `%flow runs` shows them."""


def _line_parser() -> MagicArgumentParser:
    parser = MagicArgumentParser(prog="%flow", add_help=False)
    commands = parser.add_subparsers(dest="command", parser_class=MagicArgumentParser)
    runs = commands.add_parser("runs", prog="%flow runs", add_help=False)
    runs.add_argument("--flow", metavar="NAME")
    runs.add_argument("-n", type=int, default=20, metavar="N")
    rerun = commands.add_parser("rerun", prog="%flow rerun", add_help=False)
    rerun.add_argument("target", nargs="?", metavar="RUN_ID|NAME")
    monitor = commands.add_parser("monitor", prog="%flow monitor", add_help=False)
    monitor.add_argument("run_id", nargs="?", metavar="RUN_ID")
    cache = commands.add_parser("cache", prog="%flow cache", add_help=False)
    actions = cache.add_subparsers(dest="action", parser_class=MagicArgumentParser, required=True)
    clear = actions.add_parser("clear", prog="%flow cache clear", add_help=False)
    clear.add_argument("--task", metavar="NAME")
    return parser


def _usage_error(message: str, usage: str) -> UsageError:
    return UsageError(f"{message}\nUsage: {usage}  (see %flow --help)")


def _quote_error(magic: str, line: str, exc: ValueError) -> UsageError:
    """shlex's ``ValueError("No closing quotation")`` as one line that says what to fix."""
    return UsageError(f"{magic} {line.strip()}: {str(exc).lower()}; close the quote, or escape it with a backslash.")


@magics_class
class FlowMagics(Magics):
    """The magics; ``session`` holds what they share with the run event subscribers."""

    def __init__(self, shell: Any, session: NotebookSession) -> None:
        super().__init__(shell)
        self.session = session
        self._parser = _line_parser()

    # --- %%flow --------------------------------------------------------------------------------
    @magic_arguments()
    @argument("name", nargs="?", help="Flow name (default: the cell's leading comment, else its cell id).")
    @argument("--retries", type=int, default=0, metavar="N", help="Run the cell again up to N times if it fails.")
    @argument("--retry-delay", type=float, default=0.0, metavar="S", help="Seconds to wait before each retry.")
    @argument("--timeout", type=float, default=None, metavar="S", help="End the run TimedOut after S seconds.")
    @argument("--log-prints", action="store_true", help="Send print() in the cell and its tasks to the run log.")
    @argument("--no-monitor", action="store_true", help="Show no live monitor under the cell.")
    @argument("--task-runner", choices=("threads", "dask"), default="threads", help="Where submitted tasks run.")
    @cell_magic("flow")
    def flow_cell(self, line: str, cell: str) -> Any:
        """Run the cell as one flow run."""
        __tracebackhide__ = True
        if _wants_help(line):
            print(HELP)
            return None
        try:
            args = parse_argstring(self.flow_cell, line)
        except UsageError as exc:
            raise _usage_error(f"%%flow: {exc}", CELL_USAGE) from None
        except ValueError as exc:  # shlex: an unbalanced quote
            raise _quote_error("%%flow", line, exc) from None
        options = {
            "retries": args.retries,
            "retry_delay_seconds": args.retry_delay,
            "timeout_seconds": args.timeout,
            "log_prints": True if args.log_prints else None,
        }
        try:
            FlowOptions(**options)  # the engine's own checks, e.g. --retries -1, before anything runs
        except (TypeError, ValueError) as exc:
            raise _usage_error(f"%%flow: {exc}", CELL_USAGE) from None
        info = self.session.cell_info
        name = args.name or default_name(cell, getattr(info, "cell_id", None), cell_number(self.shell))
        cell_flow = CellFlow(self.shell, name, cell, {**options, "task_runner": _task_runner(args.task_runner)})
        self.session.cell_flows[name] = cell_flow
        self.session.watch(get_runtime())
        if cell_flow.isasync:
            return _await_run(self.shell, cell_flow.flow, args.no_monitor)
        return _run(self.shell, cell_flow.flow, args.no_monitor)

    # --- %flow ...  ----------------------------------------------------------------------------
    @line_magic("flow")
    def flow_line(self, line: str) -> Any:
        """Run history, reruns, monitors and the result cache: see ``%flow --help``."""
        __tracebackhide__ = True
        if not line.strip() or _wants_help(line):
            print(HELP)
            return None
        try:
            args = self._parser.parse_argstring(line)
        except UsageError as exc:
            raise _usage_error(f"%flow: {exc}", "%flow runs|rerun|monitor|cache ...") from None
        except ValueError as exc:  # shlex: an unbalanced quote
            raise _quote_error("%flow", line, exc) from None
        if args.command == "runs":
            return self._runs(args.flow, args.n)
        if args.command == "rerun":
            return self._rerun(args.target)
        if args.command == "monitor":
            return self._monitor(args.run_id)
        return self._cache_clear(args.task)

    def _runs(self, flow_name: str | None, limit: int) -> None:
        from IPython.display import display

        from nbflow.jupyter._lookup import open_monitor, run_history
        from nbflow.jupyter._runs_table import RunsTable, monitor_picker

        if limit < 1:
            raise _usage_error(f"%flow runs: -n must be 1 or more, got {limit}", "%flow runs [--flow NAME] [-n 20]")
        rows = run_history(self.session, flow_name, limit)
        display(RunsTable(rows, flow_name))
        picker = monitor_picker(rows, lambda run_id: open_monitor(self.session, run_id))
        if picker is not None:
            display(picker)

    def _rerun(self, target: str | None) -> Any:
        __tracebackhide__ = True
        from nbflow.jupyter._lookup import resolve_rerun

        flow, run_id = resolve_rerun(self.session, target)
        self.session.watch(get_runtime())
        rerun = getattr(flow, "rerun", None)
        if rerun is None:  # pragma: no cover - until flow.rerun lands
            raise UsageError("This nbflow has no flow.rerun yet.")
        try:
            result = rerun(flow_run_id=run_id)
            if inspect.isawaitable(result):
                result = _wait_on_private_loop(result)
        except BaseException as exc:
            raise user_error(self.shell, exc)  # noqa: B904 - the user's exception, chain untouched
        return result

    def _monitor(self, run_id: str | None) -> None:
        from nbflow.jupyter._lookup import open_monitor

        open_monitor(self.session, run_id)  # displays it

    def _cache_clear(self, task: str | None) -> None:
        import nbflow.cache

        removed = nbflow.cache.clear(task=task)
        what = f" of task {task!r}" if task else ""
        print(f"Cleared {removed} cached task result{'s' if removed != 1 else ''}{what}.")


def _wants_help(line: str) -> bool:
    try:
        words = shlex.split(line)
    except ValueError:
        return False
    return "--help" in words or "-h" in words


def _task_runner(kind: str) -> Any:
    if kind == "threads":
        return None  # the flow's default: a ThreadPoolTaskRunner
    try:
        from nbflow.dask import DaskTaskRunner
    except ImportError as exc:
        raise UsageError(f"%%flow --task-runner dask needs Dask: pip install 'nbflow[dask]' ({exc})") from None
    return DaskTaskRunner()


def _run(shell: Any, flow: Flow[Any], hide_monitor: bool) -> Any:
    """Run a sync cell flow; its failure is the user's own exception, without nbflow's frames."""
    __tracebackhide__ = True
    try:
        if hide_monitor:
            with no_monitor():
                return flow.run({})
        return flow.run({})
    except BaseException as exc:
        raise user_error(shell, exc)  # noqa: B904 - the user's exception, its own chain untouched


async def _await_run(shell: Any, flow: Flow[Any], hide_monitor: bool) -> Any:
    """Run an async cell flow on the kernel's loop (the cell awaits this; see ``await_transformer``)."""
    __tracebackhide__ = True
    try:
        with _interrupt_cancels_now():
            if hide_monitor:
                with no_monitor():
                    return await flow.run({})
            return await flow.run({})
    except BaseException as exc:
        raise user_error(shell, exc)  # noqa: B904 - the user's exception, its own chain untouched


@contextlib.contextmanager
def _interrupt_cancels_now() -> Iterator[None]:
    """While an async cell flow runs, a kernel interrupt cancels it at once.

    ipykernel cancels an awaiting cell on SIGINT too, but its loop only notices once the awaited
    thing finishes by itself (ipython/ipykernel#881): a cell awaiting a 30 s task stops after 30 s.
    This handler cancels the cell's task and wakes the loop, as ``asyncio.Runner`` does.
    """
    import asyncio
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop, task = asyncio.get_running_loop(), asyncio.current_task()

    def on_sigint(signum: int, frame: Any) -> None:
        if task is not None and not task.done():
            task.cancel()
        loop.call_soon_threadsafe(lambda: None)  # a loop asleep in select() wakes up now

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _wait_on_private_loop(awaitable: Awaitable[Any]) -> Any:
    """A line magic cannot await: run an async flow's rerun on nbflow's loop thread, and wait."""
    import contextvars

    async def run() -> Any:
        return await awaitable

    runtime = get_runtime()
    future = contextvars.copy_context().run(runtime.loop_thread.submit, run())
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and start the notebook session (cell flows, monitors, per-cell output)."""
    session = NotebookSession(ipython)
    session.start()
    ipython.register_magics(FlowMagics(ipython, session))
    ipython.input_transformers_cleanup.append(await_transformer(ipython))


def unload_ipython_extension(ipython: Any) -> None:
    magics = ipython.magics_manager.registry.pop("FlowMagics", None)
    if magics is not None:
        magics.session.stop()
    ipython.magics_manager.magics["cell"].pop("flow", None)
    ipython.magics_manager.magics["line"].pop("flow", None)
    ipython.input_transformers_cleanup[:] = [
        t for t in ipython.input_transformers_cleanup if not getattr(t, "nbflow", False)
    ]
