"""The engine's drivers: one run lifecycle, written once, executed synchronously or asynchronously.

A lifecycle (of a task run or a flow run) is a generator. It does the bookkeeping itself and
*yields effects* for the two things that differ between sync and async code: calling the user's
function and sleeping. ``drive`` performs effects with blocking calls, ``adrive`` with ``await``. So
retries, timeouts, hooks and states exist in one place, whatever the user's function is.
"""

from __future__ import annotations

import contextvars
import ctypes
import inspect
import sys
import threading
from collections.abc import Callable, Generator
from typing import Any, final

from nbflow._core.clock import Clock
from nbflow._core.threads import interrupting, start_thread

__all__ = ["Call", "Sleep", "Outcome", "drive", "adrive", "Interrupted", "cancellations", "interrupt_thread"]


class Interrupted(BaseException):
    """Raised inside a run's thread to stop it (timeout or cancellation).

    A ``BaseException`` so that user code's ``except Exception`` does not swallow it.
    """


_STOPS: tuple[type[BaseException], ...] = (KeyboardInterrupt, Interrupted)


def cancellations() -> tuple[type[BaseException], ...]:
    """What ends a run ``Cancelled``: an interrupt, nbflow's own stop, and asyncio's cancellation
    (a kernel interrupt of a cell that awaits cancels the cell's task). Used as ``except cancellations():``;
    asyncio is looked up, never imported: without it loaded, nothing can raise its CancelledError."""
    asyncio = sys.modules.get("asyncio")
    return _STOPS if asyncio is None else (*_STOPS, asyncio.CancelledError)


@final  # the drivers test `type(effect) is Call`: final lets the type checker narrow the else branch to Sleep
class Call:
    """Effect: call ``fn(*args, **kwargs)``, stopping after ``timeout`` seconds if given.

    ``is_async`` says whether ``fn`` is an ``async def`` (known once per task, not looked up per call).
    """

    __slots__ = ("fn", "args", "kwargs", "timeout", "is_async")

    def __init__(
        self, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any], timeout: float | None, is_async: bool | None = None
    ) -> None:
        self.fn, self.args, self.kwargs, self.timeout = fn, args, kwargs, timeout
        self.is_async = inspect.iscoroutinefunction(fn) if is_async is None else is_async


@final
class Sleep:
    """Effect: wait ``seconds`` (on the runtime's clock)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class Outcome:
    """What a ``Call`` produced: a value, an exception, or a timeout."""

    __slots__ = ("value", "error", "timed_out")

    def __init__(self, value: Any = None, error: BaseException | None = None, timed_out: bool = False) -> None:
        self.value, self.error, self.timed_out = value, error, timed_out


Lifecycle = Generator["Call | Sleep", Any, Any]


def drive(lifecycle: Lifecycle, clock: Clock, loop_thread: Any, perform: Callable[[Call], Outcome] | None = None) -> Any:
    """Run a lifecycle to its end with blocking calls; returns what the lifecycle returns.

    ``perform`` replaces the local function call (a Dask task runner sends it to a cluster).

    An exception from performing an effect (a ``KeyboardInterrupt`` during the user's function, say)
    is thrown into the lifecycle so it can record the run's end before it propagates.
    """
    __tracebackhide__ = True  # IPython: a failing run shows the user's frames, not the engine's
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = lifecycle.throw(error) if error is not None else lifecycle.send(reply)
        except StopIteration as stop:
            return stop.value
        error = None
        try:
            if type(effect) is Call:
                reply = perform(effect) if perform else _call(effect, loop_thread)
            else:
                clock.sleep(effect.seconds)
                reply = None
        except BaseException as exc:  # noqa: BLE001 - handed to the lifecycle, which re-raises
            error, reply = exc, None


async def adrive(lifecycle: Lifecycle, clock: Clock) -> Any:
    """``drive`` for async functions, awaited on the caller's event loop."""
    __tracebackhide__ = True  # IPython: a failing run shows the user's frames, not the engine's
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = lifecycle.throw(error) if error is not None else lifecycle.send(reply)
        except StopIteration as stop:
            return stop.value
        error = None
        try:
            if type(effect) is Call:
                reply = await _acall(effect)
            else:
                await clock.asleep(effect.seconds)
                reply = None
        except BaseException as exc:  # noqa: BLE001
            error, reply = exc, None


def _call(call: Call, loop_thread: Any) -> Outcome:
    __tracebackhide__ = True
    fn = call.fn
    if call.is_async:
        return _call_coroutine_from_sync(call, loop_thread)
    if call.timeout is None:
        try:
            return Outcome(fn(*call.args, **call.kwargs))
        except Exception as exc:
            return Outcome(error=exc)
    return _call_in_thread(call)


def _call_in_thread(call: Call) -> Outcome:
    """Run a sync function on its own thread so the caller can stop waiting at the deadline.

    Python cannot kill a thread. At the deadline the thread gets an ``Interrupted`` exception raised
    asynchronously, which stops pure-Python code at its next bytecode; a thread blocked inside C (a
    socket read, ``time.sleep``) finishes that call first. The run is ``TimedOut`` on time either way.
    """
    box: list[Outcome] = []
    done = threading.Event()
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            box.append(Outcome(ctx.run(call.fn, *call.args, **call.kwargs)))
        except Interrupted:
            pass
        except BaseException as exc:  # noqa: BLE001 - the waiting thread decides what it means
            box.append(Outcome(error=exc))
        finally:
            done.set()

    thread = threading.Thread(target=target, name="nbflow-timeout", daemon=True)
    start_thread(thread)
    try:
        finished = done.wait(call.timeout)
    except BaseException:  # interrupted while waiting: stop the body too, then propagate
        interrupt_thread(thread)
        raise
    if not finished:
        interrupt_thread(thread)
        return Outcome(timed_out=True)
    outcome = box[0]
    if outcome.error is not None and not isinstance(outcome.error, Exception):
        raise outcome.error  # KeyboardInterrupt, SystemExit...: not a task failure
    return outcome


def _call_coroutine_from_sync(call: Call, loop_thread: Any) -> Outcome:
    """An ``async def`` body called from sync code runs on nbflow's private loop, never ours."""
    ctx = contextvars.copy_context()
    future = ctx.run(loop_thread.submit, _acall(call))
    try:
        return future.result()  # type: ignore[no-any-return]
    except BaseException:
        future.cancel()  # an interrupt while waiting cancels the coroutine too
        raise


async def _acall(call: Call) -> Outcome:
    """Await the call; a timeout cancels the coroutine (unlike a thread, it can be stopped)."""
    import asyncio  # only async code gets here; keeps `import nbflow` light

    __tracebackhide__ = True
    try:
        result = call.fn(*call.args, **call.kwargs)
        if not inspect.isawaitable(result):
            return Outcome(result)
        if call.timeout is None:
            return Outcome(await result)
        task = asyncio.ensure_future(result)
        try:
            done, _ = await asyncio.wait({task}, timeout=call.timeout)
        except BaseException:  # our caller was cancelled: cancel the body with it
            task.cancel()
            raise
        if not done:
            task.cancel()
            return Outcome(timed_out=True)
        return Outcome(task.result())
    except Exception as exc:
        return Outcome(error=exc)


def interrupt_thread(thread: threading.Thread) -> None:
    """Raise ``Interrupted`` in ``thread`` at its next Python bytecode (best effort)."""
    with interrupting():  # never while a thread is being started: it could get the exception (see threads)
        if thread.ident is None or not thread.is_alive():
            return
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(Interrupted))
