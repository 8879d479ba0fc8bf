"""Argument annotations for ``task.map``: ``unmapped(value)`` passes one value to every mapped run.

The public face: the names live in ``nbflow._core.annotations``.
"""

from nbflow._core.annotations import (
    unmapped,
)

__all__ = [
    "unmapped",
]
