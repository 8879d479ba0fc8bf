"""Who builds the process's default runtime: the composition root installs its builder here.

The engine cannot import the layer that wires the services into a runtime (that layer sits above
it), so ``nbflow._app.wiring`` installs ``build_runtime`` when ``nbflow`` is imported, before any
flow can run. Without it (the engine used on its own) the default runtime has no services.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbflow._engine.runtime import Runtime

__all__ = ["builder", "install"]

_builder: Callable[[], Runtime] | None = None


def install(build: Callable[[], Runtime]) -> None:
    """Use ``build()`` for the default runtime (called once, by ``nbflow._app.wiring``)."""
    global _builder  # set once at import by the composition root, read when the default is built
    _builder = build


def builder() -> Callable[[], Runtime] | None:
    """The installed builder, or None."""
    return _builder
