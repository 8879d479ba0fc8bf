"""Flow parameter validation: coerce values to the flow's type hints with pydantic, before a run exists.

pydantic is only imported when a value does not already have its hinted type, so flows with plain
arguments never pay for it.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from nbflow.exceptions import ParameterTypeError

__all__ = ["ParameterValidator"]


class ParameterValidator:
    """Validates one function's parameters; built once per flow, type adapters made on demand."""

    def __init__(self, fn: Callable[..., Any], flow_name: str) -> None:
        self.flow_name = flow_name
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # unresolvable forward references: validate nothing rather than fail
            hints = {}
        params = inspect.signature(fn).parameters
        self._hints = {
            name: hint
            for name, hint in hints.items()
            if name in params and params[name].kind not in (params[name].VAR_POSITIONAL, params[name].VAR_KEYWORD)
            and hint is not Any
        }
        self._adapters: dict[str, Any] = {}

    def __call__(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """``parameters`` with values coerced to their hints; ``ParameterTypeError`` names each bad one."""
        if not self._hints:
            return parameters
        errors: list[str] = []
        result = dict(parameters)
        for name, hint in self._hints.items():
            if name not in parameters:
                continue
            value = parameters[name]
            if isinstance(hint, type) and type(value) is hint:  # already right: no pydantic needed
                continue
            try:
                result[name] = self._adapter(name, hint).validate_python(value)
            except Exception as exc:  # pydantic.ValidationError, or a hint pydantic cannot use
                errors.append(f"  - {name}: {_first_error(exc)} (got {type(value).__name__} {_short(value)})")
        if errors:
            raise ParameterTypeError(
                f"Flow {self.flow_name!r} received invalid parameters:\n" + "\n".join(errors)
            )
        return result

    def _adapter(self, name: str, hint: Any) -> Any:
        adapter = self._adapters.get(name)
        if adapter is None:
            from pydantic import ConfigDict, TypeAdapter

            try:
                adapter = TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))
            except Exception:
                adapter = TypeAdapter(hint)
            self._adapters[name] = adapter
        return adapter


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return str(errors()[0]["msg"])
        except Exception:
            pass
    return str(exc).splitlines()[0]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
