"""Jupyter adapters: the %%flow magics and the run monitor widget (each imported when first used)."""

from __future__ import annotations

from typing import Any

__all__ = ["no_monitor"]


def __getattr__(name: str) -> Any:
    if name == "no_monitor":  # ``with no_monitor(): etl()``; the session module loads no IPython
        from nbflow.jupyter._session import no_monitor

        return no_monitor
    raise AttributeError(f"module 'nbflow.jupyter' has no attribute {name!r}")
