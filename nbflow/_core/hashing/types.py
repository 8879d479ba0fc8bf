"""How each kind of value beyond the built-in atoms and containers is hashed (see ``encoder``).

Chosen once per type by ``choose``. numpy, pandas and pydantic are looked up in ``sys.modules``:
an object of their types can only exist once the program imported them, so nothing is imported here.
"""

from __future__ import annotations

import collections
import copyreg
import dataclasses
import datetime as _dt
import decimal
import enum
import pathlib
import sys
import types
import uuid
from typing import Any

from nbflow._core.hashing.encoder import BUILTIN_BASES, Encoder, Handler, Unhashable, blame, enc_attrs, enc_items, type_name

__all__ = ["choose"]

# What object.__reduce_ex__ names as the default constructor; typeshed's copyreg stub leaves it out.
_NEWOBJ: Any = vars(copyreg)["__newobj__"]


# ---- stdlib values --------------------------------------------------------------------------------


def _tz_name(tz: _dt.tzinfo | None) -> str:
    # str() of datetime.timezone and zoneinfo.ZoneInfo is the offset or zone key: deterministic.
    return "" if tz is None else f"{type_name(type(tz))}:{tz}"


def _enc_datetime(e: Encoder, o: _dt.datetime | _dt.time) -> None:
    e.out += b"t"
    e.text(f"{type_name(type(o))}|{o.isoformat()}|{o.fold}|{_tz_name(o.tzinfo)}")


def _enc_date(e: Encoder, o: _dt.date) -> None:
    e.out += b"t"
    e.text(f"{type_name(type(o))}|{o.isoformat()}")


def _enc_timedelta(e: Encoder, o: _dt.timedelta) -> None:
    e.out += b"td%d:%d:%d;" % (o.days, o.seconds, o.microseconds)


def _enc_by_str(e: Encoder, o: Any) -> None:
    # Decimal (str keeps its exponent: Decimal("1.0") and Decimal("1.00") print differently),
    # UUID, and pure/concrete paths (the class is part of it: PurePosixPath vs PosixPath).
    e.out += b"v"
    e.text(f"{type_name(type(o))}|{o}")


def _enc_enum(e: Encoder, o: enum.Enum) -> None:
    e.out += b"E"
    e.text(f"{type_name(type(o))}.{o.name}")


def _enc_module(e: Encoder, o: types.ModuleType) -> None:
    e.out += b"M"
    e.text(o.__name__)


def _enc_routine(e: Encoder, o: Any) -> None:
    """Functions hash by module + qualname; user-code functions add their source hash, so editing a
    function passed as an argument changes the key."""
    bound_to = getattr(o, "__self__", None)
    if bound_to is not None and not isinstance(bound_to, types.ModuleType):
        # a bound method ([].append, obj.method): the object it is bound to is part of what it computes
        e.out += b"B"
        enc_items(e, (getattr(o, "__func__", None) or o.__name__, bound_to), b"")
        return
    from nbflow._core.hashing.source import source_hash

    e.out += b"R"
    e.text(f"{getattr(o, '__module__', None)}.{getattr(o, '__qualname__', None) or o.__name__}")
    e.text(source_hash(o) if isinstance(o, types.FunctionType) else "")


def _enc_class(e: Encoder, o: type) -> None:
    from nbflow._core.hashing.source import class_hash

    e.out += b"C"
    e.text(type_name(o))
    e.text(class_hash(o))


def _enc_dataclass(e: Encoder, o: Any) -> None:
    if e.enter(o):
        e.out += b"D"
        e.text(type_name(type(o)))
        # every field, compare=False ones too: they can still change what the task computes
        enc_attrs(e, [(f.name, getattr(o, f.name)) for f in dataclasses.fields(o)])
        e.leave(o)


def _enc_pydantic(e: Encoder, o: Any) -> None:
    if e.enter(o):
        e.out += b"Y"
        e.text(type_name(type(o)))
        fields = getattr(type(o), "model_fields", None) or getattr(type(o), "__fields__", {})
        pairs = [(name, getattr(o, name)) for name in fields]
        pairs += sorted((getattr(o, "model_extra", None) or {}).items())
        enc_attrs(e, pairs)
        e.leave(o)


def _builtin_subclass(base: Handler) -> Handler:
    """namedtuples, str/int subclasses, dict subclasses (Counter, defaultdict): class + base content."""

    def handler(e: Encoder, o: Any) -> None:
        e.out += b"S"
        e.text(type_name(type(o)))
        base(e, o)
        if isinstance(o, collections.defaultdict):
            e.enc(o.default_factory)
        extra = getattr(o, "__dict__", None)
        if extra:
            enc_attrs(e, sorted(extra.items()))

    return handler


def _enc_object(e: Encoder, o: Any) -> None:
    """Anything else hashes by its class name plus the state pickle would save, walked structurally
    (never the pickle bytes). A type that refuses to pickle (sockets, locks, files, generators,
    connections) has no reproducible content, so it is unhashable."""
    if not e.enter(o):
        return
    tp = type(o)
    e.out += b"O"
    e.text(type_name(tp))
    try:
        reducer = copyreg.dispatch_table.get(tp)  # where pickle looks first (re.Pattern is there)
        rv = reducer(o) if reducer is not None else o.__reduce_ex__(4)
    except Exception as exc:
        raise Unhashable(o, str(exc) or type(exc).__name__) from exc
    if isinstance(rv, str):  # a module-level singleton, pickled by name
        e.text(rv)
        e.leave(o)
        return
    func, args, state, items, dict_items = (tuple(rv) + (None,) * 5)[:5]
    if func is _NEWOBJ and args and args[0] is tp:
        func, args = None, args[1:]  # the default: the class is written already
    elif isinstance(func, type):
        func = type_name(func)  # by name, like the instance's own class
    parts = [("<reduce>", func), ("<args>", args)]
    # default state is __dict__, or (__dict__, slots): as attributes, sorted, so errors say `.conn`
    if type(state) is tuple and len(state) == 2 and all(isinstance(s, (dict, type(None))) for s in state):
        state = {**(state[0] or {}), **(state[1] or {})}
    if type(state) is dict and all(type(k) is str for k in state):
        parts += sorted(state.items())
    else:
        parts.append(("<state>", state))
    if items is not None:
        parts.append(("<items>", list(items)))
    if dict_items is not None:
        parts.append(("<dict items>", dict(dict_items)))
    enc_attrs(e, parts)
    e.leave(o)


# ---- numpy and pandas (only when the program already imported them) -------------------------------


def _enc_ndarray(e: Encoder, a: Any) -> None:
    np = sys.modules["numpy"]
    if isinstance(a, np.ma.MaskedArray):
        e.out += b"AM"
        enc_items(e, (a.data, np.ma.getmaskarray(a)), b"")
        return
    dt = a.dtype
    e.out += b"A"
    e.text(dt.str if dt.names is None and dt.subdtype is None else repr(dt.descr))
    e.out += b"%r" % (a.shape,)
    if dt.hasobject:  # object arrays hold Python objects: hash each one
        enc_items(e, a.ravel().tolist(), b"")
    else:
        # one C-ordered copy only when the array is not C-contiguous already; viewing as bytes
        # also covers dtypes the buffer protocol refuses (datetime64)
        flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        e.raw(memoryview(flat))


def _enc_numpy_scalar(e: Encoder, o: Any) -> None:
    e.out += b"a"
    e.text(o.dtype.str)
    e.raw(o.tobytes())


# pandas' own row hashes are deterministic (fixed SipHash key) but hash unknown objects by str(),
# which may hold an id(); they are used only for the value kinds below.
_PANDAS_SAFE = frozenset(
    "string bytes empty integer floating boolean decimal complex categorical mixed-integer-float "
    "datetime64 datetime date timedelta64 timedelta time period".split()
)


def _enc_pandas_values(e: Encoder, s: Any) -> None:
    pd, np = sys.modules["pandas"], sys.modules["numpy"]
    e.text(str(s.dtype))
    if isinstance(s, pd.RangeIndex):
        e.out += b"%d:%d:%d;" % (s.start, s.stop, s.step)
    elif isinstance(s.dtype, np.dtype) and s.dtype != object:
        _enc_ndarray(e, s.to_numpy())
    elif isinstance(s, pd.MultiIndex) or pd.api.types.infer_dtype(s, skipna=True) in _PANDAS_SAFE:
        _enc_ndarray(e, pd.util.hash_pandas_object(s, index=False, categorize=False).to_numpy())
    else:
        enc_items(e, list(s), b"")


def _enc_pandas_index(e: Encoder, idx: Any) -> None:
    e.out += b"PI"
    e.text(type_name(type(idx)))
    enc_items(e, list(idx.names), b"")
    _enc_pandas_values(e, idx)


def _enc_pandas_series(e: Encoder, s: Any) -> None:
    e.out += b"PS"
    enc_attrs(e, [("name", s.name), ("index", s.index)])
    _enc_pandas_values(e, s)


def _enc_pandas_frame(e: Encoder, df: Any) -> None:
    e.out += b"PD"
    enc_attrs(e, [("columns", df.columns), ("index", df.index)])
    i = 0
    try:
        for i in range(df.shape[1]):
            _enc_pandas_values(e, df.iloc[:, i])
    except Exception as exc:
        raise blame(exc, df.iloc[:, i], f"[{df.columns[i]!r}]")


_ROUTINE_TYPES = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.MethodWrapperType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.ClassMethodDescriptorType,
)


def choose(tp: type) -> Handler:
    """The handler for values of type ``tp`` (which is not one of the exact built-ins)."""
    # Order matters: IntEnum is an int, numpy.float64 a float, pandas.Timestamp a datetime.
    if issubclass(tp, enum.Enum):
        return _enc_enum
    np = sys.modules.get("numpy")
    if np is not None:
        if issubclass(tp, np.ndarray):
            return _enc_ndarray
        if issubclass(tp, np.generic):
            return _enc_numpy_scalar
    pd = sys.modules.get("pandas")
    if pd is not None:
        if issubclass(tp, pd.DataFrame):
            return _enc_pandas_frame
        if issubclass(tp, pd.Series):
            return _enc_pandas_series
        if issubclass(tp, pd.Index):
            return _enc_pandas_index
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(tp, pydantic.BaseModel):
        return _enc_pydantic
    if dataclasses.is_dataclass(tp):
        return _enc_dataclass
    if issubclass(tp, type):
        return _enc_class
    if issubclass(tp, _ROUTINE_TYPES):
        return _enc_routine
    if issubclass(tp, types.ModuleType):
        return _enc_module
    if issubclass(tp, (_dt.datetime, _dt.time)):
        return _enc_datetime
    if issubclass(tp, _dt.date):
        return _enc_date
    if issubclass(tp, _dt.timedelta):
        return _enc_timedelta
    if issubclass(tp, (decimal.Decimal, uuid.UUID, pathlib.PurePath)):
        return _enc_by_str
    for base, handler in BUILTIN_BASES:
        if issubclass(tp, base):
            return _builtin_subclass(handler)
    return _enc_object
