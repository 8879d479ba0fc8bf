"""Source hashes of task functions, including the user-code helpers they call, for cache keys.

A task's hash covers its own source plus, transitively, every function, class and simple constant of
*user code* (``__main__``/notebook cells, or modules outside site-packages and the stdlib) that it
names as a global. Editing a helper the task calls changes the hash; editing an unrelated cell, or
upgrading a library, does not. Reading source is slow, so it is cached per code object; the walk over
globals runs on every call (a few dict look-ups) so a redefined helper is noticed at once.
"""

from __future__ import annotations

import ast
import dis
import functools
import hashlib
import inspect
import os
import site
import sys
import sysconfig
import textwrap
import threading
import types
from collections.abc import Callable
from typing import Any

from nbflow._core.hashing.encoder import digest_bytes
from nbflow._core.threads import renew_after_fork

__all__ = ["class_hash", "source_hash"]

_MISSING = object()
_SIMPLE = frozenset({int, float, complex, str, bytes, bool, type(None)})
# Class attributes that move or appear without the class changing: line numbers (3.13), and the
# slot-name cache copyreg adds the first time an instance is pickled.
_CLASS_NOISE = frozenset(
    {"__module__", "__qualname__", "__firstlineno__", "__static_attributes__", "__slotnames__", "__dict__", "__weakref__"}
)
_MAX_CODE_CACHE = 20_000
# One ast.parse at a time: before 3.11.8 and 3.12.2, CPython kept the AST constructor's recursion depth
# in interpreter-wide state, so two threads parsing at once (the GIL can switch during a garbage
# collection inside the parse) failed with "SystemError: AST constructor recursion depth mismatch"
# (CPython gh-106905). Two task runs of a task not hashed yet, on pool threads, do parse at once.
_parse_lock = threading.Lock()
renew_after_fork(globals(), "_parse_lock")  # a fork while another thread parses


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# ---- what is user code ----------------------------------------------------------------------------


@functools.cache
def _library_roots() -> tuple[str, ...]:
    # the stdlib and the install folders only: not sys.prefix itself, which can be a parent of the
    # user's project (a Docker image's /usr with the project in /usr/src/app)
    scheme = sysconfig.get_paths()
    paths = {scheme[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in scheme}
    paths.update(getattr(site, "getsitepackages", lambda: [])())
    paths.add(site.getusersitepackages())
    roots = {os.path.normcase(os.path.realpath(p)).rstrip(os.sep) for p in paths if p}
    return tuple(r + os.sep for r in roots if r)


_USER_MODULES: dict[str, bool] = {"__main__": True}


def _is_user_file(filename: str) -> bool:
    if filename.startswith("<"):  # exec()'d or IPython ("<ipython-input-3-...>"); not "<frozen os>"
        return not filename.startswith("<frozen")
    path = os.path.normcase(os.path.realpath(filename))
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not path.startswith(_library_roots())


def _is_user_module(name: str | None, filename: str | None = None) -> bool:
    """True for code the user writes (notebook, scripts, project modules), False for installed code.
    nbflow itself counts as installed, wherever it lives."""
    cached = _USER_MODULES.get(name) if name is not None else None
    if cached is not None:
        return cached
    module = sys.modules.get(name) if name is not None else None
    if name is None or module is None:  # exec()'d with a made-up __name__: judge by the code's file, every time
        return bool(filename and _is_user_file(filename))
    file = getattr(module, "__file__", None)
    result = bool(file and not (name == "nbflow" or name.startswith("nbflow.")) and _is_user_file(file))
    _USER_MODULES[name] = result
    return result


def _is_user_function(fn: types.FunctionType) -> bool:
    return _is_user_module(fn.__module__, fn.__code__.co_filename)


def _is_user_class(cls: type) -> bool:
    return _is_user_module(getattr(cls, "__module__", None))


# ---- one code object: its own text, and the global names it uses ----------------------------------

# id(code) -> (code, own digest, global names, all names); the code object is kept so its id stays valid
_CODE_INFO: dict[int, tuple[types.CodeType, bytes, tuple[str, ...], tuple[str, ...]]] = {}


def _code_info(code: types.CodeType) -> tuple[types.CodeType, bytes, tuple[str, ...], tuple[str, ...]]:
    hit = _CODE_INFO.get(id(code))
    if hit is not None and hit[0] is code:
        return hit
    if len(_CODE_INFO) > _MAX_CODE_CACHE:
        _CODE_INFO.clear()
    text = _source_text(code)
    own = _h(b"src\0" + text.encode("utf-8", "surrogatepass")) if text is not None else _h(b"code\0" + _code_bytes(code))
    global_names: set[str] = set()
    all_names: set[str] = set()
    for c in _nested_codes(code):
        all_names.update(c.co_names)
        for ins in dis.get_instructions(c):
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                global_names.add(ins.argval)
    hit = (code, own, tuple(sorted(global_names)), tuple(sorted(all_names)))
    _CODE_INFO[id(code)] = hit
    return hit


def _nested_codes(code: types.CodeType) -> list[types.CodeType]:
    out = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out.extend(_nested_codes(const))
    return out


def _source_text(code: types.CodeType) -> str | None:
    """The function's source without its decorators (so ``@task(retries=3)`` does not change the
    key), or None when there is no source (exec'd strings, some REPLs)."""
    try:
        text = inspect.getsource(code)
    except (OSError, TypeError):
        return None
    text = textwrap.dedent(text)
    try:
        with _parse_lock:
            tree = ast.parse(text)
    except SyntaxError:  # a lambda inside a larger expression: keep the lines as they are
        return text
    node = tree.body[0] if tree.body else None
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.decorator_list:
        text = "\n".join(text.splitlines()[node.lineno - 1 :])
    return text


def _code_bytes(code: types.CodeType) -> bytes:
    """A deterministic digest of bytecode, for code without source; it differs across Python versions."""
    consts = tuple(_code_bytes(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.co_code + digest_bytes((code.co_name, code.co_names, code.co_varnames, consts))


# ---- the walk over globals ------------------------------------------------------------------------


class _Walk:
    """One walk: digests made so far, the functions/classes in progress (a cycle -- recursion,
    mutual recursion -- becomes a marker naming the function), and every look-up it made, which
    is what a later call re-checks to reuse the result."""

    __slots__ = ("memo", "active", "lookups", "attrs", "sizes")

    def __init__(self) -> None:
        self.memo: dict[int, bytes] = {}
        self.active: set[int] = set()
        self.lookups: list[tuple[Any, str, Any]] = []  # (namespace, name, value it held)
        self.attrs: list[tuple[Any, str, Any]] = []  # (object, attribute, value it held)
        self.sizes: list[tuple[Any, int]] = []  # (class __dict__, its length): catches added members

    def get(self, namespace: Any, name: str) -> Any:
        value = namespace.get(name, _MISSING)
        self.lookups.append((namespace, name, value))
        return value

    def attr(self, obj: Any, name: str) -> Any:
        value = getattr(obj, name, _MISSING)
        self.attrs.append((obj, name, value))
        return value

    def still_valid(self) -> bool:
        """True when every look-up would give the same objects now: then so would the digest, since
        code objects and simple constants are immutable. Costs a dict get per name, no hashing."""
        try:
            for namespace, name, value in self.lookups:
                if namespace.get(name, _MISSING) is not value:
                    return False
            for obj, name, value in self.attrs:
                if getattr(obj, name, _MISSING) is not value:
                    return False
            for namespace, size in self.sizes:
                if len(namespace) != size:
                    return False
        except Exception:  # an emptied closure cell, an odd namespace: just hash again
            return False
        return True


def _fn_digest(fn: types.FunctionType, walk: _Walk) -> bytes:
    key = id(fn)
    done = walk.memo.get(key)
    if done is not None:
        return done
    if key in walk.active:
        return _h(b"rec\0" + fn.__qualname__.encode())
    walk.active.add(key)
    code = walk.attr(fn, "__code__")
    _, own, global_names, all_names = _code_info(code)
    parts = [own]
    scope = fn.__globals__
    for name in global_names:
        value = walk.get(scope, name)  # missing: a builtin, which is library code
        if value is _MISSING:
            continue
        if type(value) is types.ModuleType and _is_user_module(value.__name__):
            # `helpers.clean(x)` in user module `helpers`: follow the attributes the code names
            for attr in all_names:
                d = _value_digest(walk.get(value.__dict__, attr), walk, False)
                if d is not None:
                    parts.append(f"{name}.{attr}".encode() + d)
            continue
        d = _value_digest(value, walk, True)
        if d is not None:
            parts.append(name.encode() + d)
    if fn.__closure__:
        for name, cell in zip(code.co_freevars, fn.__closure__):
            try:
                contents = walk.attr(cell, "cell_contents")
            except ValueError:  # not assigned yet
                continue
            d = _value_digest(contents, walk, True)
            if d is not None:
                parts.append(b"cell:" + name.encode() + d)
    # defaults are evaluated at def time, so `def f(n=N)` depends on N's value then
    for i, default in enumerate(walk.attr(fn, "__defaults__") or ()):
        d = _value_digest(default, walk, True)
        if d is not None:
            parts.append(b"default:%d" % i + d)
    for name, default in sorted((walk.attr(fn, "__kwdefaults__") or {}).items()):
        d = _value_digest(default, walk, True)
        if d is not None:
            parts.append(b"kwdefault:" + name.encode() + d)
    wrapped = walk.get(fn.__dict__, "__wrapped__")
    if wrapped is not _MISSING:
        d = _value_digest(wrapped, walk, False)
        if d is not None:
            parts.append(b"wrapped:" + d)
    # names are identifiers and digests have a fixed length, so this join cannot be ambiguous
    digest = _h(b"\0".join(parts))
    walk.active.discard(key)
    walk.memo[key] = digest
    return digest


def _class_digest(cls: type, walk: _Walk) -> bytes:
    key = id(cls)
    done = walk.memo.get(key)
    if done is not None:
        return done
    if key in walk.active:
        return _h(b"rec\0" + cls.__qualname__.encode())
    walk.active.add(key)
    parts = [b"class\0" + cls.__qualname__.encode()]
    for base in walk.attr(cls, "__bases__"):
        d = _class_digest(base, walk) if _is_user_class(base) else None
        parts.append(f"{base.__module__}.{base.__qualname__}".encode() + (d or b""))
    members = cls.__dict__
    walk.sizes.append((members, len(members)))
    for name in sorted(members):
        if name not in _CLASS_NOISE:
            d = _value_digest(walk.get(members, name), walk, True)
            if d is not None:
                parts.append(name.encode() + d)
    digest = _h(b"\0".join(parts))
    walk.active.discard(key)
    walk.memo[key] = digest
    return digest


_CONSTANTS: dict[tuple[type, Any], bytes] = {}


def _constant_digest(value: Any) -> bytes:
    # memoised for exact int/str/bytes only: for floats 0.0 == -0.0 would share an entry
    tp = type(value)
    if tp is int or tp is str or tp is bytes:
        digest = _CONSTANTS.get((tp, value))
        if digest is None:
            if len(_CONSTANTS) > _MAX_CODE_CACHE:
                _CONSTANTS.clear()
            digest = _CONSTANTS[(tp, value)] = digest_bytes(value)
        return digest
    return digest_bytes(value)


def _library_digest(value: Any) -> bytes:
    """Library code is identified by name, not source: swapping json.dumps for pickle.dumps changes
    the key, upgrading the library does not."""
    name = getattr(value, "__qualname__", None) or value.__name__
    return _h(f"lib\0{getattr(value, '__module__', None)}.{name}".encode())


def _value_digest(value: Any, walk: _Walk, constants: bool) -> bytes | None:
    """Digest of what a global name (or cell, default, class attribute) refers to, or None when it
    is not part of the source: library code, and data other than simple constants."""
    tp = type(value)
    if tp in _SIMPLE or (tp in (tuple, frozenset) and all(type(v) in _SIMPLE for v in value)):
        return _constant_digest(value) if constants else None
    if tp is types.FunctionType:
        if _is_user_function(value):
            return _fn_digest(value, walk)
        wrapped = walk.get(value.__dict__, "__wrapped__")  # a library decorator around user code
        if wrapped is not _MISSING:
            return _value_digest(wrapped, walk, False)
        return _library_digest(value)
    if isinstance(value, type):
        return _class_digest(value, walk) if _is_user_class(value) else _library_digest(value)
    if tp is types.BuiltinFunctionType or tp is types.ModuleType:
        return _library_digest(value)
    if tp in (types.MethodType, staticmethod, classmethod):
        return _value_digest(value.__func__, walk, False)
    if tp is property:
        ds = [_value_digest(f, walk, False) for f in (value.fget, value.fset, value.fdel)]
        return _h(b"property\0" + b"".join(d or b"-" for d in ds))
    if tp is functools.partial:
        return _value_digest(value.func, walk, False)
    if callable(value) and not isinstance(value, types.ModuleType):
        # objects wrapping a user function (an nbflow Task, functools.lru_cache) name it __wrapped__;
        # only a real function is followed, so proxies that invent attributes cannot loop
        try:
            wrapped = inspect.getattr_static(value, "__wrapped__", None)
        except Exception:
            return None
        if isinstance(wrapped, types.FunctionType):
            walk.attrs.append((value, "__wrapped__", wrapped))
            return _value_digest(wrapped, walk, False)
    return None


# ---- public API -----------------------------------------------------------------------------------

# id(target) -> (target, the walk that hashed it, hex digest); target is kept so its id stays valid
_RESULTS: dict[int, tuple[Any, _Walk, str]] = {}


def _cached(target: Any, compute: Callable[[_Walk], str]) -> str:
    hit = _RESULTS.get(id(target))
    if hit is not None and hit[0] is target and hit[1].still_valid():
        return hit[2]
    walk = _Walk()
    digest = compute(walk)
    if len(_RESULTS) > _MAX_CODE_CACHE:
        _RESULTS.clear()
    _RESULTS[id(target)] = (target, walk, digest)
    return digest


def source_hash(fn: Any) -> str:
    """Hex digest of ``fn``'s source and of the user-code helpers and constants it refers to.

    Equal in every process for the same code; changes when ``fn`` or anything of user code it
    calls is edited. Installed library code contributes only its name. Never raises.
    """
    target = fn
    if isinstance(target, (types.MethodType, staticmethod, classmethod)):
        target = target.__func__

    def compute(walk: _Walk) -> str:
        digest = _value_digest(target, walk, False)
        if digest is None and not isinstance(target, (types.FunctionType, type)) and callable(target):
            digest = _value_digest(type(target).__call__, walk, False)  # a callable instance
        if digest is None:  # a library callable object: its class names it
            digest = _library_digest(type(target))
        return digest.hex()

    return _cached(target, compute)


def class_hash(cls: type) -> str:
    """Hex digest of a user-code class's members (methods by source, constants by value); "" for
    library classes, which are identified by name alone."""
    if not _is_user_class(cls):
        return ""
    return _cached(cls, lambda walk: _class_digest(cls, walk).hex())
