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
import types
from typing import Any

from nbflow._hashing import digest_bytes

__all__ = ["class_hash", "source_hash"]

_MISSING = object()
_SIMPLE = frozenset({int, float, complex, str, bytes, bool, type(None)})
# Class attributes that move or appear without the class changing: line numbers (3.13), and the
# slot-name cache copyreg adds the first time an instance is pickled.
_CLASS_NOISE = frozenset(
    {"__module__", "__qualname__", "__firstlineno__", "__static_attributes__", "__slotnames__", "__dict__", "__weakref__"}
)
_MAX_CODE_CACHE = 20_000


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# ---- what is user code ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
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
    if filename.startswith("<"):  # exec()'d or IPython ("<ipython-input-3-...>")
        return True
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
    if name is not None and (name == "nbflow" or name.startswith("nbflow.")):
        result = False
    else:
        module = sys.modules.get(name) if name is not None else None
        file = getattr(module, "__file__", None) or filename
        if not file:
            return False  # built-in module, or nothing to go by
        result = _is_user_file(file)
        if module is None:
            return result  # not importable by name: decide again next time
    _USER_MODULES[name] = result  # type: ignore[index]
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
    """One source_hash call: digests already made, and the functions/classes being hashed (a cycle
    -- recursion, mutual recursion -- becomes a marker naming the function)."""

    __slots__ = ("memo", "active")

    def __init__(self) -> None:
        self.memo: dict[int, bytes] = {}
        self.active: set[int] = set()


def _fn_digest(fn: types.FunctionType, walk: _Walk) -> bytes:
    key = id(fn)
    done = walk.memo.get(key)
    if done is not None:
        return done
    if key in walk.active:
        return _h(b"rec\0" + fn.__qualname__.encode())
    walk.active.add(key)
    code = fn.__code__
    _, own, global_names, all_names = _code_info(code)
    parts = [own]
    scope = fn.__globals__
    for name in global_names:
        value = scope.get(name, _MISSING)  # missing: a builtin, which is library code
        if value is _MISSING:
            continue
        if type(value) is types.ModuleType:
            # `helpers.clean(x)` in user module `helpers`: follow the attributes the code names
            if _is_user_module(value.__name__):
                for attr in all_names:
                    d = _value_digest(getattr(value, attr, _MISSING), walk, False)
                    if d is not None:
                        parts.append(f"{name}.{attr}".encode() + d)
            continue
        d = _value_digest(value, walk, True)
        if d is not None:
            parts.append(name.encode() + d)
    if fn.__closure__:
        for name, cell in zip(code.co_freevars, fn.__closure__):
            try:
                contents = cell.cell_contents
            except ValueError:  # not yet assigned
                continue
            d = _value_digest(contents, walk, True)
            if d is not None:
                parts.append(b"cell:" + name.encode() + d)
    # defaults are evaluated at def time, so `def f(n=N)` depends on N's value then
    for i, default in enumerate(fn.__defaults__ or ()):
        d = _value_digest(default, walk, True)
        if d is not None:
            parts.append(b"default:%d" % i + d)
    for name, default in sorted((fn.__kwdefaults__ or {}).items()):
        d = _value_digest(default, walk, True)
        if d is not None:
            parts.append(b"kwdefault:" + name.encode() + d)
    wrapped = fn.__dict__.get("__wrapped__")
    if wrapped is not None:
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
    for base in cls.__bases__:
        d = _class_digest(base, walk) if _is_user_class(base) else None
        parts.append(f"{base.__module__}.{base.__qualname__}".encode() + (d or b""))
    for name, attr in sorted(cls.__dict__.items()):
        if name not in _CLASS_NOISE:
            d = _value_digest(attr, walk, True)
            if d is not None:
                parts.append(name.encode() + d)
    digest = _h(b"\0".join(parts))
    walk.active.discard(key)
    walk.memo[key] = digest
    return digest


def _value_digest(value: Any, walk: _Walk, constants: bool) -> bytes | None:
    """Digest of what a global name (or cell, default, class attribute) refers to, or None when it
    is not part of the source: library code, and data other than simple constants."""
    tp = type(value)
    if tp in _SIMPLE or (tp in (tuple, frozenset) and all(type(v) in _SIMPLE for v in value)):
        return digest_bytes(value) if constants else None
    if tp is types.FunctionType:
        if _is_user_function(value):
            return _fn_digest(value, walk)
        wrapped = getattr(value, "__wrapped__", None)  # a library decorator around user code
        return _value_digest(wrapped, walk, False) if wrapped is not None else None
    if isinstance(value, type):
        return _class_digest(value, walk) if _is_user_class(value) else None
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
            return _value_digest(wrapped, walk, False)
    return None


# ---- public API -----------------------------------------------------------------------------------


def source_hash(fn: Any) -> str:
    """Hex digest of ``fn``'s source and of the user-code helpers and constants it refers to.

    Equal in every process for the same code; changes when ``fn`` or anything of user code it
    calls is edited. Installed library code contributes only its name. Never raises.
    """
    target = fn
    if isinstance(target, (types.MethodType, staticmethod, classmethod)):
        target = target.__func__
    walk = _Walk()
    digest = _value_digest(target, walk, False)
    if digest is None and not isinstance(target, (types.FunctionType, type)) and callable(target):
        digest = _value_digest(type(target).__call__, walk, False)  # a callable instance
    if digest is None:  # library code, builtins: the name is all we hash
        name = f"{getattr(target, '__module__', None)}.{getattr(target, '__qualname__', type(target).__qualname__)}"
        digest = _h(b"lib\0" + name.encode())
    return digest.hex()


def class_hash(cls: type) -> str:
    """Hex digest of a user-code class's members (methods by source, constants by value); "" for
    library classes, which are identified by name alone."""
    if not _is_user_class(cls):
        return ""
    return _class_digest(cls, _Walk()).hex()
