"""One error tree: every exception class nbflow defines is an ``NbflowError`` listed in
``nbflow.exceptions.__all__`` and drawn in its docstring, or a named internal one that never reaches
the user."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import nbflow
from nbflow import exceptions
from nbflow.exceptions import NbflowError

# Internal control flow or markers, caught inside nbflow; never raised to the user's code.
INTERNAL = {
    "nbflow._engine.drive.Interrupted": "a BaseException that stops a run's thread, as KeyboardInterrupt does",
    "nbflow._core.hashing.encoder.Unhashable": "collects the path of an unhashable value; turned into UnhashableInputError",
    "nbflow._services.store.render._TooLarge": "stops rendering a parameter that is too large; caught at once",
    "nbflow._services.cache.files._HasBuffers": "stops pickling at the first out-of-band buffer; caught at once",
    "nbflow._services.cache.signing.BadTag": "a cache entry without this home's tag; always turned into a miss",
    "nbflow._services.store.writer._Abandoned": "a batch given up at exit to be spooled; caught by the writer",
}



def _modules() -> list[str]:
    names = ["nbflow"]
    for info in pkgutil.walk_packages(nbflow.__path__, "nbflow."):
        if info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return names


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in an nbflow module, by qualified name."""
    found = {}
    for name in _modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__.startswith("nbflow"):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_public_error_is_an_nbflow_error():
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert issubclass(cls, NbflowError), f"nbflow.exceptions.{name} is not an NbflowError"
        assert cls.__module__ == "nbflow.exceptions" and cls.__name__ == name, f"{name} is an alias: document it"
        assert cls.__doc__, f"{name} has no docstring"


def test_every_exception_class_of_nbflow_is_in_the_tree():
    classes = _exception_classes()
    public = {getattr(exceptions, n) for n in exceptions.__all__}
    stray = {
        name for name, cls in classes.items()
        if cls not in public and name not in INTERNAL
    }
    assert not stray, f"exception classes outside nbflow.exceptions.__all__: {sorted(stray)}"
    gone = set(INTERNAL) - set(classes)
    assert not gone, f"internal exceptions listed here but no longer defined: {sorted(gone)}"


def _subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _subclasses(sub)
    return out


def test_every_nbflow_error_subclass_is_public():
    _exception_classes()  # imports every module, so every subclass is defined
    mine = {c for c in _subclasses(NbflowError) if c.__module__.startswith("nbflow")}
    public = {getattr(exceptions, n) for n in exceptions.__all__}
    assert mine <= public, sorted(c.__qualname__ for c in mine - public)


def test_disk_unavailable_is_the_public_cache_error():
    from nbflow._services.cache.disk import DiskUnavailable

    assert DiskUnavailable is exceptions.CacheUnavailableError


def test_errors_stay_importable_where_they_were():
    from nbflow._core.hashing.encoder import UnhashableInputError
    from nbflow.cli import CliError

    assert UnhashableInputError is exceptions.UnhashableInputError
    assert CliError is exceptions.UsageError
    # Code written for plain Python keeps catching what it caught.
    assert issubclass(exceptions.RunTimeoutError, TimeoutError)
    assert issubclass(exceptions.UnhashableInputError, TypeError)


_TREE_LINE = re.compile(r"^(?P<indent>[ │]*)(?:[├└]── )?(?P<name>[A-Z]\w+)\b")


def test_the_docstring_draws_the_whole_tree():
    """Every public class appears once in the drawing, under its real parent."""
    doc = exceptions.__doc__ or ""
    parents: list[tuple[int, str]] = []  # (depth, name) of the branch being drawn
    drawn: dict[str, str | None] = {}
    for line in doc.splitlines():
        match = _TREE_LINE.match(line.removeprefix("    "))
        if not match or match["name"] not in exceptions.__all__:
            continue
        depth = len(match["indent"]) // 4
        while parents and parents[-1][0] >= depth:
            parents.pop()
        drawn[match["name"]] = parents[-1][1] if parents else None
        parents.append((depth, match["name"]))
    assert set(drawn) == set(exceptions.__all__), set(exceptions.__all__) ^ set(drawn)
    for name, parent in drawn.items():
        cls = getattr(exceptions, name)
        expected = NbflowError if parent is None else getattr(exceptions, parent)
        if cls is NbflowError:
            continue
        assert expected in cls.__bases__, f"{name} is drawn under {parent} but derives from {cls.__bases__}"


# Built-in exceptions nbflow still raises on purpose, and why each never reaches the user as such.
BUILTIN_RAISES = {
    "nbflow/_core/settings.py": "pydantic validators must raise ValueError; load_settings turns them into ConfigurationError",
    "nbflow/_services/database/migrations.py": "a bug in nbflow's own migration list, caught by the test suite, not by users",
    "nbflow/_services/store/spool.py": "a spool file that is not ours; caught at once and set aside with a warning",
    "nbflow/_engine/futures.py": "future.result(timeout=) raises TimeoutError, as Prefect's and concurrent.futures' do",
    "nbflow/cli/_demo.py": "the demo's flaky API, standing in for a user's failing code",
}
# Python's own protocols: a module's __getattr__ raises AttributeError, a missing extra ImportError.
PROTOCOL_RAISES = {"AttributeError", "ImportError"}


def test_nbflow_raises_only_its_own_errors_on_purpose():
    # `raise ValueError(...)` in nbflow is a plain error a user cannot tell from their own; every
    # error raised on purpose is an NbflowError (with the builtin as a second base where it helps).
    import ast
    import builtins
    from pathlib import Path

    root = Path(nbflow.__file__).parent
    builtin = {name for name, value in vars(builtins).items()
               if inspect.isclass(value) and issubclass(value, Exception)} - {"NotImplementedError", "StopIteration", *PROTOCOL_RAISES}
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = f"nbflow/{path.relative_to(root).as_posix()}"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
                if node.exc.func.id in builtin and rel not in BUILTIN_RAISES:
                    found.append(f"{rel}:{node.lineno} raise {node.exc.func.id}")
    assert not found, "raise an error of nbflow.exceptions instead:\n" + "\n".join(found)
