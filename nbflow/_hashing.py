"""Deterministic structural hashing of task inputs, for cache keys that survive kernel restarts.

Every value is fed to one SHA-256 stream as a type tag plus its content, recursively, so equal inputs
give equal keys in any process on any day: nothing depends on ``id()``, ``hash()`` (salted per process
by ``PYTHONHASHSEED``), dict insertion order or pickle bytes. numpy, pandas and pydantic values are
recognised only when their library is already imported; this module never imports them.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import decimal
import enum
import hashlib
import pathlib
import struct
import sys
import types
import uuid
import weakref
from collections.abc import Collection, Mapping
from typing import Any, Callable

__all__ = ["UnhashableInputError", "hash_parameters", "stable_hash"]

# SHA-256 measured 1.7 GB/s here (SHA-NI); SHA-1 1.9, BLAKE2b 0.7, MD5 0.7. xxh3 reached 29 GB/s but
# would be a new runtime dependency for a speed the target (1 GB/s) does not need. The prefix names
# the encoding, so a future change of format cannot collide with keys written by this one.
_BASE = hashlib.sha256(b"nbflow-hash:1\0")
_BIG = 1 << 16  # buffers larger than this skip the staging bytearray: no 100 MB copy
_pack_double = struct.Struct("<d").pack
_pack_complex = struct.Struct("<dd").pack
_MAX_PATH_SHOWN = 12


class UnhashableInputError(TypeError):
    """An input has no deterministic content to hash; the task must run uncached (or get a cache_key_fn)."""

    def __init__(self, message: str, *, argument: str | None, path: str, type_name: str) -> None:
        super().__init__(message)
        self.argument = argument  # top-level parameter name, when hashed through hash_parameters
        self.path = path  # e.g. "parameters['conn'].sock"
        self.type_name = type_name  # e.g. "socket.socket"


class _Unhashable(Exception):
    """Internal: raised at the offending value, collects its path while the stack unwinds."""

    def __init__(self, obj: Any, reason: str) -> None:
        super().__init__(reason)
        self.type_name = _type_name(type(obj))
        self.reason = reason
        self.path: list[str] = []  # innermost first

    def public(self, root: str, argument: str | None) -> UnhashableInputError:
        segments = self.path[::-1]
        if len(segments) > _MAX_PATH_SHOWN:
            segments = segments[: _MAX_PATH_SHOWN // 2] + ["..."] + segments[-_MAX_PATH_SHOWN // 2 :]
        path = root + "".join(segments)
        fix = "give the task a cache_key_fn"
        if argument is not None:
            fix += f", or leave the argument out of the key (cache_policy=INPUTS - {argument!r})"
        message = f"cannot hash {path} -> <{self.type_name}> for a cache key: {self.reason}; {fix}"
        return UnhashableInputError(message, argument=argument, path=path, type_name=self.type_name)


def _blame(exc: BaseException, item: Any, segment: str) -> _Unhashable:
    """Turn a failure while hashing ``item`` into an _Unhashable that knows where it happened."""
    if isinstance(exc, _Unhashable):
        err = exc
    elif isinstance(exc, RecursionError):
        err = _Unhashable(item, "it is nested too deeply")
    else:
        err = _Unhashable(item, f"{type(exc).__name__}: {exc}")
        err.__cause__ = exc
    err.path.append(segment)
    return err


def _type_name(tp: type) -> str:
    module = getattr(tp, "__module__", None)
    qualname = getattr(tp, "__qualname__", None) or getattr(tp, "__name__", "?")
    return qualname if module in (None, "builtins") else f"{module}.{qualname}"


class _Encoder:
    """Writes the tagged encoding of values into one hash stream (small pieces staged in ``out``)."""

    __slots__ = ("out", "hasher", "active")

    def __init__(self, active: dict[int, int] | None = None) -> None:
        self.out = bytearray()
        self.hasher = _BASE.copy()
        # id -> depth of the mutable containers being encoded right now: a cycle becomes a
        # back-reference by relative depth, which is the same in every process.
        self.active: dict[int, int] = {} if active is None else active

    def enc(self, obj: Any) -> None:
        handler = _HANDLERS.get(type(obj))
        if handler is None:
            handler = _resolve(type(obj))
        handler(self, obj)

    def big(self, buf: memoryview) -> None:
        self.hasher.update(self.out)
        self.out.clear()
        self.hasher.update(buf)

    def raw(self, data: bytes | memoryview) -> None:
        self.out += b"%d:" % len(data)
        if len(data) > _BIG:
            self.big(data)  # type: ignore[arg-type]
        else:
            self.out += data

    def text(self, s: str) -> None:
        self.raw(s.encode("utf-8", "surrogatepass"))

    def enter(self, obj: Any) -> bool:
        """Mark a mutable container as in progress; False (after writing a back-reference) on a cycle."""
        key = id(obj)
        depth = self.active.get(key)
        if depth is not None:
            self.out += b"@%d;" % (len(self.active) - depth)
            return False
        self.active[key] = len(self.active)
        return True

    def leave(self, obj: Any) -> None:
        del self.active[id(obj)]

    def sub_digest(self, obj: Any) -> bytes:
        """Digest of one value on its own: the sort key that makes sets and dicts order-independent."""
        sub = _Encoder(self.active)
        sub.enc(obj)
        sub.hasher.update(sub.out)
        return sub.hasher.digest()

    def digest(self) -> str:
        self.hasher.update(self.out)
        return self.hasher.hexdigest()


# ---- atoms ----------------------------------------------------------------------------------------


def _enc_none(e: _Encoder, o: None) -> None:
    e.out += b"N"


def _enc_bool(e: _Encoder, o: bool) -> None:
    e.out += b"T" if o else b"F"


def _enc_int(e: _Encoder, o: int) -> None:
    if -(1 << 63) <= o < 1 << 63:
        e.out += b"i%d;" % o
    else:  # str() of a huge int is slow and capped by sys.set_int_max_str_digits
        e.out += b"I"
        e.raw(o.to_bytes(o.bit_length() // 8 + 1, "little", signed=True))


def _enc_float(e: _Encoder, o: float) -> None:
    e.out += b"f"
    e.out += _pack_double(o)


def _enc_complex(e: _Encoder, o: complex) -> None:
    e.out += b"c"
    e.out += _pack_complex(o.real, o.imag)


def _enc_str(e: _Encoder, o: str) -> None:
    e.out += b"s"
    e.text(o)


def _enc_bytes(e: _Encoder, o: bytes) -> None:
    e.out += b"b"
    e.raw(o)


def _enc_bytearray(e: _Encoder, o: bytearray) -> None:
    e.out += b"y"
    e.raw(o)


def _enc_memoryview(e: _Encoder, o: memoryview) -> None:
    e.out += b"m"
    e.text(o.format)
    e.out += b"%r" % (o.shape,)
    e.raw(o.cast("B") if o.c_contiguous else o.tobytes())


def _enc_singleton(e: _Encoder, o: Any) -> None:
    e.out += b"G"
    e.text(repr(o))  # Ellipsis, NotImplemented


# ---- containers -----------------------------------------------------------------------------------


def _enc_items(e: _Encoder, o: Any, tag: bytes) -> None:
    e.out += tag + b"%d:" % len(o)
    i, x = 0, None
    try:
        for i, x in enumerate(o):
            e.enc(x)
    except Exception as exc:
        raise _blame(exc, x, f"[{i}]")


def _enc_tuple(e: _Encoder, o: tuple) -> None:
    _enc_items(e, o, b"(")  # immutable: a cycle must pass through a mutable container, guarded there


def _enc_list(e: _Encoder, o: list) -> None:
    if e.enter(o):
        _enc_items(e, o, b"[")
        e.leave(o)


def _ordered(e: _Encoder, keys: Collection[Any]) -> list[tuple[bytes | None, Any]]:
    """Keys in an order that depends only on their values: natural for all-str or all-int keys
    (cheap, and the common case), by content digest otherwise (mixed types, or types such as
    frozenset whose ``<`` is not a total order)."""
    first = type(next(iter(keys), None))
    if first in (str, int) and all(type(k) is first for k in keys):
        return [(None, k) for k in sorted(keys)]
    digests = []
    for k in keys:
        try:
            digests.append((e.sub_digest(k), k))
        except Exception as exc:
            raise _blame(exc, k, f"<key of type {_type_name(type(k))}>")
    digests.sort(key=lambda pair: pair[0])
    return digests


def _enc_set(e: _Encoder, o: set | frozenset) -> None:
    if not e.enter(o):
        return
    e.out += b"{" if type(o) is set else b"z"
    e.out += b"%d:" % len(o)
    for digest, k in _ordered(e, o):
        if digest is None:
            e.enc(k)  # str or int: cannot fail
        else:
            e.out += digest
    e.leave(o)


def _enc_dict_body(e: _Encoder, o: Mapping[Any, Any], ordered: bool) -> None:
    e.out += b"%d:" % len(o)
    pairs: Any = ((None, k) for k in o) if ordered else _ordered(e, o.keys())
    k = None
    try:
        for digest, k in pairs:
            if digest is None:
                e.enc(k)
            else:
                e.out += digest
            e.enc(o[k])
    except Exception as exc:
        raise _blame(exc, o[k], f"[{k!r:.60}]")


def _enc_dict(e: _Encoder, o: dict) -> None:
    # Python says {"a": 1, "b": 2} == {"b": 2, "a": 1}, so key order does not change the hash
    # (as in Prefect and joblib). OrderedDict compares order-sensitively and hashes so too.
    if e.enter(o):
        e.out += b"d"
        _enc_dict_body(e, o, ordered=False)
        e.leave(o)


def _enc_ordereddict(e: _Encoder, o: collections.OrderedDict) -> None:
    if e.enter(o):
        e.out += b"o"
        _enc_dict_body(e, o, ordered=True)
        e.leave(o)


def _enc_range(e: _Encoder, o: range) -> None:
    e.out += b"r%d:%d:%d;" % (o.start, o.stop, o.step)


def _enc_slice(e: _Encoder, o: slice) -> None:
    e.out += b":"
    _enc_items(e, (o.start, o.stop, o.step), b"")


# ---- stdlib values --------------------------------------------------------------------------------


def _tz_name(tz: _dt.tzinfo | None) -> str:
    # str() of datetime.timezone and zoneinfo.ZoneInfo is the offset or zone key: deterministic.
    return "" if tz is None else f"{_type_name(type(tz))}:{tz}"


def _enc_datetime(e: _Encoder, o: _dt.datetime | _dt.time) -> None:
    e.out += b"t"
    e.text(f"{_type_name(type(o))}|{o.isoformat()}|{o.fold}|{_tz_name(o.tzinfo)}")


def _enc_date(e: _Encoder, o: _dt.date) -> None:
    e.out += b"t"
    e.text(f"{_type_name(type(o))}|{o.isoformat()}")


def _enc_timedelta(e: _Encoder, o: _dt.timedelta) -> None:
    e.out += b"td%d:%d:%d;" % (o.days, o.seconds, o.microseconds)


def _enc_by_str(e: _Encoder, o: Any) -> None:
    # Decimal (str keeps its exponent: Decimal("1.0") and Decimal("1.00") print differently),
    # UUID, and pure/concrete paths (the class is part of it: PurePosixPath vs PosixPath).
    e.out += b"v"
    e.text(f"{_type_name(type(o))}|{o}")


def _enc_enum(e: _Encoder, o: enum.Enum) -> None:
    e.out += b"E"
    e.text(f"{_type_name(type(o))}.{o.name}")


def _enc_module(e: _Encoder, o: types.ModuleType) -> None:
    e.out += b"M"
    e.text(o.__name__)


def _enc_routine(e: _Encoder, o: Any) -> None:
    """Functions hash by module + qualname; user-code functions add their source hash, so editing a
    function passed as an argument changes the key."""
    bound_to = getattr(o, "__self__", None)
    if bound_to is not None and not isinstance(bound_to, types.ModuleType):
        # a bound method ([].append, obj.method): the object it is bound to is part of what it computes
        e.out += b"B"
        _enc_items(e, (getattr(o, "__func__", None) or o.__name__, bound_to), b"")
        return
    from nbflow._source_hash import source_hash

    e.out += b"R"
    e.text(f"{getattr(o, '__module__', None)}.{getattr(o, '__qualname__', None) or o.__name__}")
    e.text(source_hash(o) if isinstance(o, types.FunctionType) else "")


def _enc_class(e: _Encoder, o: type) -> None:
    from nbflow._source_hash import class_hash

    e.out += b"C"
    e.text(_type_name(o))
    e.text(class_hash(o))


def _attrs(e: _Encoder, names_values: list[tuple[str, Any]]) -> None:
    e.out += b"%d:" % len(names_values)
    name, value = "", None
    try:
        for name, value in names_values:
            e.text(name)
            e.enc(value)
    except Exception as exc:
        raise _blame(exc, value, f".{name}")


def _enc_dataclass(e: _Encoder, o: Any) -> None:
    if e.enter(o):
        e.out += b"D"
        e.text(_type_name(type(o)))
        # every field, compare=False ones too: they can still change what the task computes
        _attrs(e, [(f.name, getattr(o, f.name)) for f in dataclasses.fields(o)])
        e.leave(o)


def _enc_pydantic(e: _Encoder, o: Any) -> None:
    if e.enter(o):
        e.out += b"Y"
        e.text(_type_name(type(o)))
        fields = getattr(type(o), "model_fields", None) or getattr(type(o), "__fields__", {})
        pairs = [(name, getattr(o, name)) for name in fields]
        pairs += sorted((getattr(o, "model_extra", None) or {}).items())
        _attrs(e, pairs)
        e.leave(o)


def _enc_builtin_subclass(base: Callable[[_Encoder, Any], None], cast: type) -> Callable[[_Encoder, Any], None]:
    """namedtuples, str/int subclasses, dict subclasses (Counter, defaultdict): class + base content."""

    def handler(e: _Encoder, o: Any) -> None:
        e.out += b"S"
        e.text(_type_name(type(o)))
        base(e, o)
        if isinstance(o, collections.defaultdict):
            e.enc(o.default_factory)
        extra = getattr(o, "__dict__", None)
        if extra:
            _attrs(e, sorted(extra.items()))

    return handler


def _enc_object(e: _Encoder, o: Any) -> None:
    """Anything else hashes by its class name plus the state pickle would save, walked structurally
    (never the pickle bytes). A type that refuses to pickle (sockets, locks, files, generators,
    connections) has no reproducible content, so it is unhashable."""
    if not e.enter(o):
        return
    tp = type(o)
    e.out += b"O"
    e.text(_type_name(tp))
    try:
        rv = o.__reduce_ex__(4)
    except Exception as exc:
        raise _Unhashable(o, str(exc) or type(exc).__name__) from exc
    if isinstance(rv, str):  # a module-level singleton, pickled by name
        e.text(rv)
    else:
        func, args, state, items, dict_items = (tuple(rv) + (None,) * 5)[:5]
        import copyreg

        if func is copyreg.__newobj__ and args and args[0] is tp:
            func, args = None, args[1:]  # the default: class already written
        elif isinstance(func, type):
            func = _type_name(func)  # by name, like the instance's own class
        _attrs(
            e,
            [
                ("<reduce>", func),
                ("<args>", args),
                ("<state>", state),
                ("<items>", None if items is None else list(items)),
                ("<dict items>", None if dict_items is None else dict(dict_items)),
            ],
        )
    e.leave(o)


# ---- numpy and pandas (only when the program already imported them) -------------------------------


def _enc_ndarray(e: _Encoder, a: Any) -> None:
    np = sys.modules["numpy"]
    if isinstance(a, np.ma.MaskedArray):
        e.out += b"AM"
        _enc_items(e, (a.data, np.ma.getmaskarray(a)), b"")
        return
    dt = a.dtype
    e.out += b"A"
    e.text(dt.str if dt.names is None and dt.subdtype is None else repr(dt.descr))
    e.out += b"%r" % (a.shape,)
    if dt.hasobject:  # object arrays hold Python objects: hash each one
        _enc_items(e, a.ravel().tolist(), b"")
    else:
        # one C-ordered copy only when the array is not C-contiguous already; viewing as bytes
        # also covers dtypes the buffer protocol refuses (datetime64)
        flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        e.raw(memoryview(flat))


def _enc_numpy_scalar(e: _Encoder, o: Any) -> None:
    e.out += b"a"
    e.text(o.dtype.str)
    e.raw(o.tobytes())


# pandas' own row hashes are deterministic (fixed SipHash key) but hash unknown objects by str(),
# which may hold an id(); they are used only for the value kinds below.
_PANDAS_SAFE = frozenset(
    "string bytes empty integer floating boolean decimal complex categorical mixed-integer-float "
    "datetime64 datetime date timedelta64 timedelta time period".split()
)


def _enc_pandas_values(e: _Encoder, s: Any) -> None:
    pd, np = sys.modules["pandas"], sys.modules["numpy"]
    e.text(str(s.dtype))
    if isinstance(s, pd.RangeIndex):
        e.out += b"%d:%d:%d;" % (s.start, s.stop, s.step)
    elif isinstance(s.dtype, np.dtype) and s.dtype != object:
        _enc_ndarray(e, s.to_numpy())
    elif isinstance(s, pd.MultiIndex) or pd.api.types.infer_dtype(s, skipna=True) in _PANDAS_SAFE:
        _enc_ndarray(e, pd.util.hash_pandas_object(s, index=False, categorize=False).to_numpy())
    else:
        _enc_items(e, list(s), b"")


def _enc_pandas_index(e: _Encoder, idx: Any) -> None:
    e.out += b"PI"
    e.text(_type_name(type(idx)))
    _enc_items(e, list(idx.names), b"")
    _enc_pandas_values(e, idx)


def _enc_pandas_series(e: _Encoder, s: Any) -> None:
    e.out += b"PS"
    _attrs(e, [("name", s.name), ("index", s.index)])
    _enc_pandas_values(e, s)


def _enc_pandas_frame(e: _Encoder, df: Any) -> None:
    e.out += b"PD"
    _attrs(e, [("columns", df.columns), ("index", df.index)])
    i = 0
    try:
        for i in range(df.shape[1]):
            _enc_pandas_values(e, df.iloc[:, i])
    except Exception as exc:
        raise _blame(exc, df.iloc[:, i], f"[{df.columns[i]!r}]")


# ---- dispatch -------------------------------------------------------------------------------------

_HANDLERS: dict[type, Callable[[_Encoder, Any], None]] = {
    type(None): _enc_none,
    bool: _enc_bool,
    int: _enc_int,
    float: _enc_float,
    complex: _enc_complex,
    str: _enc_str,
    bytes: _enc_bytes,
    bytearray: _enc_bytearray,
    memoryview: _enc_memoryview,
    type(...): _enc_singleton,
    type(NotImplemented): _enc_singleton,
    tuple: _enc_tuple,
    list: _enc_list,
    dict: _enc_dict,
    collections.OrderedDict: _enc_ordereddict,
    set: _enc_set,
    frozenset: _enc_set,
    range: _enc_range,
    slice: _enc_slice,
    _dt.datetime: _enc_datetime,
    _dt.time: _enc_datetime,
    _dt.date: _enc_date,
    _dt.timedelta: _enc_timedelta,
    decimal.Decimal: _enc_by_str,
    uuid.UUID: _enc_by_str,
    types.FunctionType: _enc_routine,
    types.BuiltinFunctionType: _enc_routine,
    types.MethodType: _enc_routine,
    types.ModuleType: _enc_module,
}
# Types defined in user code are resolved into a weak map so redefined notebook classes can go.
_USER_HANDLERS: weakref.WeakKeyDictionary[type, Callable[[_Encoder, Any], None]] = weakref.WeakKeyDictionary()
_BUILTIN_BASES: list[tuple[type, Callable[[_Encoder, Any], None]]] = [
    (bool, _enc_bool),
    (int, _enc_int),
    (float, _enc_float),
    (complex, _enc_complex),
    (str, _enc_str),
    (bytes, _enc_bytes),
    (bytearray, _enc_bytearray),
    (tuple, _enc_tuple),
    (list, _enc_list),
    (collections.OrderedDict, _enc_ordereddict),
    (dict, _enc_dict),
    ((set, frozenset), _enc_set),  # type: ignore[list-item]
]


def _resolve(tp: type) -> Callable[[_Encoder, Any], None]:
    """Pick (once per type) the handler for a type that is not one of the exact built-ins."""
    handler = _USER_HANDLERS.get(tp)
    if handler is None:
        handler = _choose(tp)
        if tp.__module__ == "__main__" or "<locals>" in tp.__qualname__:
            _USER_HANDLERS[tp] = handler
        else:
            _HANDLERS[tp] = handler
    return handler


def _choose(tp: type) -> Callable[[_Encoder, Any], None]:
    # Order matters: IntEnum is an int, numpy.float64 is a float, pandas.Timestamp is a datetime.
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
    if hasattr(tp, "__dataclass_fields__"):
        return _enc_dataclass
    if issubclass(tp, type):
        return _enc_class
    if issubclass(tp, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)) or tp in _ROUTINE_TYPES:
        return _enc_routine
    if issubclass(tp, (_dt.datetime, _dt.time)):
        return _enc_datetime
    if issubclass(tp, _dt.date):
        return _enc_date
    if issubclass(tp, (decimal.Decimal, uuid.UUID, pathlib.PurePath)):
        return _enc_by_str
    for base, handler in _BUILTIN_BASES:
        if issubclass(tp, base):
            return _enc_builtin_subclass(handler, base)  # type: ignore[arg-type]
    return _enc_object


_ROUTINE_TYPES = frozenset(
    {
        types.MethodWrapperType,
        types.MethodDescriptorType,
        types.WrapperDescriptorType,
        types.ClassMethodDescriptorType,
    }
)


# ---- public API -----------------------------------------------------------------------------------


def stable_hash(*objs: Any) -> str:
    """Hex digest of ``objs`` that is equal for equal inputs in any process, on any day.

    >>> stable_hash({"b": 2, "a": 1}) == stable_hash({"a": 1, "b": 2})
    True

    The type is part of the key: ``1``, ``1.0`` and ``True`` hash differently.
    Raises UnhashableInputError naming the type and where it sits, e.g. ``objs[0]['conn']``.
    """
    e = _Encoder()
    e.out += b"S%d:" % len(objs)
    i, o = 0, None
    try:
        for i, o in enumerate(objs):
            e.enc(o)
    except Exception as exc:
        err = _blame(exc, o, "")
        raise err.public(f"objs[{i}]", None) from err.__cause__
    return e.digest()


def hash_parameters(parameters: Mapping[str, Any], exclude: Collection[str] = ()) -> str:
    """Hex digest of a task call's bound parameters (name -> value), leaving out ``exclude``.

    Parameter order does not matter. An unhashable value raises UnhashableInputError whose
    ``.argument`` is the parameter's name, so the caller can warn once and run the task uncached.
    """
    e = _Encoder()
    names = sorted(name for name in parameters if name not in exclude)
    e.out += b"P%d:" % len(names)
    for name in names:
        e.text(name)
        value = parameters[name]
        try:
            e.enc(value)
        except Exception as exc:
            err = _blame(exc, value, "")
            raise err.public(f"parameters[{name!r}]", name) from err.__cause__
    return e.digest()


def digest_bytes(obj: Any) -> bytes:
    """Raw digest of one value (for _source_hash: module-level constants). May raise _Unhashable."""
    e = _Encoder()
    e.enc(obj)
    e.hasher.update(e.out)
    return e.hasher.digest()
