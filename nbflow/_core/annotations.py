"""Argument annotations for ``task.map``: ``unmapped(value)`` passes one value to every mapped run."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

__all__ = ["unmapped"]

T = TypeVar("T")


class unmapped(Generic[T]):  # noqa: N801 - Prefect's spelling
    """Give the same ``value`` to every run of ``task.map(...)`` instead of iterating it.

    >>> add.map([1, 2, 3], unmapped(10))  # doctest: +SKIP
    """

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"unmapped({self.value!r})"

    def __getitem__(self, _: Any) -> T:
        return self.value
