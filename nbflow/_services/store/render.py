"""Parameters for display: a bounded JSON rendering that never stringifies a huge object in full."""

from __future__ import annotations

import io
import json
import pickle
from typing import Any

__all__ = ["render_parameters", "pickle_parameters", "MAX_PICKLE_BYTES"]

MAX_ITEMS = 20  # per list/dict shown
MAX_STRING = 200  # characters per string shown
MAX_DEPTH = 4
MAX_PICKLE_BYTES = 16 * 1024**2  # larger parameters are not kept for reruns: pass them again instead


def _type_name(value: Any) -> str:
    cls = type(value)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"


def _short(text: str) -> str:
    if len(text) <= MAX_STRING:
        return text
    return f"{text[:MAX_STRING]}... ({len(text)} characters)"


def _render(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value if not isinstance(value, int) or abs(value) < 2**63 else _short(str(value))
    if isinstance(value, str):
        return _short(value)
    if isinstance(value, bytes):
        return f"<bytes, {len(value)} bytes>"
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):  # numpy arrays, pandas objects, tensors
        return f"<{_type_name(value)} shape={tuple(shape)!r} dtype={value.dtype}>"
    if depth >= MAX_DEPTH:
        return f"<{_type_name(value)}>"
    if isinstance(value, dict):
        items = list(value.items())[:MAX_ITEMS]
        out = {str(k) if isinstance(k, str) else _short(repr(k)): _render(v, depth + 1) for k, v in items}
        if len(value) > MAX_ITEMS:
            out["..."] = f"{len(value) - MAX_ITEMS} more"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)[:MAX_ITEMS] if not isinstance(value, (set, frozenset)) else _first(value)
        out = [_render(v, depth + 1) for v in items]
        if len(value) > MAX_ITEMS:
            out.append(f"... {len(value) - MAX_ITEMS} more")
        return out
    size = _len(value)
    if size is not None and size > MAX_ITEMS:
        return f"<{_type_name(value)}, {size} items>"
    fields = getattr(value, "__dataclass_fields__", None) or getattr(type(value), "model_fields", None)
    if isinstance(fields, dict):  # dataclasses and pydantic models: their fields, bounded
        return {"__type__": _type_name(value),
                **{name: _render(getattr(value, name, None), depth + 1) for name in list(fields)[:MAX_ITEMS]}}
    try:
        return _short(repr(value))
    except Exception:
        return f"<{_type_name(value)}>"


def _first(values: Any) -> list[Any]:
    out = []
    for v in values:
        if len(out) == MAX_ITEMS:
            break
        out.append(v)
    return out


def _len(value: Any) -> int | None:
    try:
        return len(value)
    except Exception:
        return None


def render_parameters(parameters: dict[str, Any]) -> str:
    """JSON for ``nbflow flow-run inspect``: strings cut at 200 characters, containers at 20 items,
    arrays as their shape and dtype.

    >>> render_parameters({"n": 3, "names": ["a"] * 30})
    '{"n": 3, "names": ["a", "a", "a", "a", "a", "a", "a", "a", "a", "a", "a", "a", "a", "a", "a", "a", "a", "a", "a", "a", "... 10 more"]}'
    """
    try:
        return json.dumps({name: _render(value, 1) for name, value in parameters.items()}, allow_nan=True)
    except Exception as exc:  # a value that changed size under us, a broken __len__ ...
        return json.dumps({"<unavailable>": f"{type(exc).__name__}: {exc}"})


class _TooLarge(Exception):
    pass


class _CappedBuffer(io.BytesIO):
    """A pickle's destination that refuses to grow past ``MAX_PICKLE_BYTES``, so a flow called with a
    400 MB array gives up at once instead of copying it whole (0.3 s and 400 MB, on the caller's thread)."""

    def write(self, data: Any) -> int:
        if self.tell() + memoryview(data).nbytes > MAX_PICKLE_BYTES:
            raise _TooLarge
        return super().write(data)


def pickle_parameters(parameters: dict[str, Any]) -> tuple[bytes | None, str | None]:
    """``(pickle, None)`` for a rerun to load, or ``(None, why not)``. Standard pickle, by reference for
    functions and classes, so values defined in a notebook load only in that notebook's kernel."""
    buffer = _CappedBuffer()
    try:
        pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(parameters)
    except _TooLarge:
        return None, f"parameters take more than the {MAX_PICKLE_BYTES} bytes pickled that are kept for reruns"
    except Exception as exc:
        return None, f"parameters cannot be pickled: {type(exc).__name__}: {exc}"
    return buffer.getvalue(), None
