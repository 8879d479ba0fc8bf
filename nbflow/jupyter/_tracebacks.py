"""A failed cell flow fails like a normal cell: the user's exception, showing the user's frames only.

Between a ``%%flow`` cell and the line that failed sit IPython's ``run_cell_magic``, the magic, and
the engine (flow run, task run, the call helpers). None of that is the user's code. ``user_error``
unlinks nbflow's frames from the traceback and has IPython render it from the cell's own frame on,
with IPython's formatter (colours, context lines, ``%debug`` walks the same frames). The exception
is the user's own object, so ``ename``/``evalue`` of the failed cell are theirs too.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

__all__ = ["user_error", "without_engine_frames"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def without_engine_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` with the frames of nbflow's own modules unlinked (tracebacks are linked lists)."""
    kept: list[TracebackType] = []
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            kept.append(tb)
        tb = tb.tb_next
    for here, after in zip(kept, [*kept[1:], None]):
        here.tb_next = after
    return kept[0] if kept else None


def user_error(shell: Any, error: BaseException) -> BaseException:
    """``error``, trimmed to the user's frames, rendered by IPython from those frames on; raise it.

    An error nbflow raised itself (a timeout, a cancelled upstream task) has no user frames left and
    renders as its one line, like a ``UsageError``: no traceback into nbflow's internals.
    """
    tb = without_engine_frames(error.__traceback__)
    error.__traceback__ = tb

    def render() -> list[str]:
        return shell.InteractiveTB.structured_traceback(type(error), error, tb, tb_offset=0)  # type: ignore[no-any-return]

    try:
        error._render_traceback_ = render  # type: ignore[attr-defined]  # IPython's hook for this
    except (AttributeError, TypeError):  # an exception type without a __dict__: IPython's default view
        pass
    return error
