"""A ``%%flow`` cell as a flow: the cell body, compiled the way IPython compiles a cell, is the flow's function.

The body runs with ``exec`` in the user's namespace, so assignments land there as in a normal cell;
the value of its last expression is the flow's result, which the magic returns for IPython to display
(``Out[n]``, ``_``, a trailing ``;`` all behave as usual). A body with top-level ``await`` compiles to
a coroutine: its flow is an async flow, awaited on the kernel's own event loop (see
``await_transformer``), so ``await`` means what it means in any other cell.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from types import CodeType
from typing import Any

from nbflow._engine.flow import Flow, flow

__all__ = ["CellFlow", "await_transformer", "body_kind", "cell_number", "default_name", "FLOW_CELL"]

FLOW_CELL = re.compile(r"%%flow(?:\s|$)")
"""The first line of a ``%%flow`` cell."""

_AWAIT = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


class CellFlow:
    """One version of a ``%%flow`` cell: its compiled body and the ``Flow`` that runs it.

    The body is compiled once, when the cell runs; ``flow`` can run it again later (``%flow rerun``),
    against whatever the notebook's names are then: edit a task, rerun the cell flow.
    """

    def __init__(self, shell: Any, name: str, body: str, options: dict[str, Any]) -> None:
        self.shell = shell
        self.name = name
        self.body = body
        self._code, self._last, self._silent = _compile(shell, body)
        self.isasync = _is_coroutine(self._code) or _is_coroutine(self._last)
        fn = _as_notebook_function(self._run_async if self.isasync else self._run, name)
        self.flow: Flow[Any] = flow(fn, name=name, validate_parameters=False, **options)

    def _run(self) -> Any:
        __tracebackhide__ = True
        globals_, locals_ = self.shell.user_global_ns, self.shell.user_ns
        exec(self._code, globals_, locals_)
        if self._last is None:
            return None
        value = eval(self._last, globals_, locals_)
        return None if self._silent else value

    async def _run_async(self) -> Any:
        __tracebackhide__ = True
        globals_, locals_ = self.shell.user_global_ns, self.shell.user_ns
        pending = eval(self._code, globals_, locals_)  # a coroutine when the statements await
        if pending is not None:
            await pending
        if self._last is None:
            return None
        value = eval(self._last, globals_, locals_)
        if _is_coroutine(self._last):
            value = await value
        return None if self._silent else value

    def __repr__(self) -> str:
        return f"CellFlow(name={self.name!r})"


def _as_notebook_function(method: Callable[[], Any], name: str) -> Callable[[], Any]:
    """``method`` as a function that says it was defined in the notebook (``__main__``), as the cell
    was: the run store records where a flow lives, and only this kernel can rerun a cell's flow."""
    if inspect.iscoroutinefunction(method):

        async def body() -> Any:
            __tracebackhide__ = True
            return await method()
    else:

        def body() -> Any:
            __tracebackhide__ = True
            return method()

    body.__module__ = "__main__"
    body.__name__ = body.__qualname__ = re.sub(r"\W", "_", name)
    return body


def _compile(shell: Any, body: str) -> tuple[CodeType, CodeType | None, bool]:
    """Compile ``body`` as IPython compiles a cell: its syntax, AST transformers and ``__future__`` flags.

    The source is cached under the current cell's number with one leading line for the ``%%flow``
    line, so a traceback reads ``Cell In[7], line 3`` and line 3 is the cell's line 3.
    """
    source = "\n" + shell.transform_cell(body)
    filename = shell.compile.cache(source, cell_number(shell), raw_code="%%flow\n" + body)
    flags = shell.compile.flags | _AWAIT
    tree = compile(source, filename, "exec", flags | ast.PyCF_ONLY_AST, dont_inherit=True)
    tree = shell.transform_ast(tree)
    last: ast.Expression | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    code = compile(tree, filename, "exec", flags, dont_inherit=True)
    last_code = None if last is None else compile(last, filename, "eval", flags, dont_inherit=True)
    from IPython.core.displayhook import DisplayHook

    return code, last_code, DisplayHook.semicolon_at_end_of_expression(body)


def cell_number(shell: Any) -> int:
    """The ``In[N]`` of the cell running now.

    IPython 9 adds one to ``shell.execution_count`` before it runs a cell (IPython 8 did after), so
    that count names the next cell; the running cell's own result carries its number in both.
    """
    running = getattr(shell.displayhook, "exec_result", None)
    number = getattr(running, "execution_count", None)
    return int(number) if number is not None else int(shell.execution_count)


def _is_coroutine(code: CodeType | None) -> bool:
    return code is not None and bool(code.co_flags & inspect.CO_COROUTINE)


def body_kind(shell: Any, body: str) -> str:
    """``"sync"``, ``"async"`` (top-level ``await``, ``async for``/``with``) or ``"invalid"`` (a SyntaxError)."""
    try:
        source = shell.transform_cell(body)
        code = compile(source, "<nbflow-check>", "exec", shell.compile.flags | _AWAIT, dont_inherit=True)
    except SyntaxError:
        return "invalid"
    except Exception:  # noqa: BLE001 - an IPython transformer failed: the magic reports it
        return "sync"
    return "async" if _is_coroutine(code) else "sync"


def await_transformer(shell: Any) -> Callable[[list[str]], list[str]]:
    """An IPython input transformer for ``%%flow`` cells that IPython's own rewrite would run badly.

    IPython turns a ``%%flow`` cell into ``get_ipython().run_cell_magic(...)``, a plain call run
    synchronously. For a body that awaits, this prefixes ``await`` (the magic returns a coroutine for
    such bodies), so the kernel runs the cell on its event loop as it runs any cell that awaits. A
    body with a syntax error is left to IPython, the ``%%flow`` line commented out: the error then
    reads exactly as in any other cell, with the cell's own line numbers.
    """

    def transform(lines: list[str]) -> list[str]:
        if not lines or not FLOW_CELL.match(lines[0]):
            return lines
        body = "".join(lines[1:])
        kind = body_kind(shell, body)
        if kind == "invalid":
            return ["#" + lines[0], *lines[1:]]
        if kind == "sync":
            return lines
        line = lines[0][len("%%flow"):].strip()
        return [f"await get_ipython().run_cell_magic('flow', {line!r}, {body!r})\n"]

    transform.nbflow = True  # type: ignore[attr-defined]  # found again by unload_ipython_extension
    return transform


def default_name(body: str, cell_id: str | None, number: int | None) -> str:
    """The flow name of an unnamed ``%%flow`` cell: its leading comment, else its cell id or number.

    >>> default_name("# Load and clean the data\\nx = 1", None, 3)
    'load-and-clean-the-data'
    >>> default_name("x = 1", "3f2a9b1c-aaaa", 3)
    'cell-3f2a9b1c'
    """
    for line in body.splitlines():
        text = line.strip()
        if not text:
            continue
        if text.startswith("#"):
            slug = re.sub(r"[^a-z0-9]+", "-", text.lstrip("#").strip().lower()).strip("-")[:60].strip("-")
            if slug:
                return slug
        break
    if cell_id:
        return f"cell-{cell_id[:8]}"
    return f"cell-{number}" if number is not None else "cell"
