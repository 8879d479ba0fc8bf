"""Cache-key hashing: equal inputs give equal keys in any process; edits to task code change them."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import json
import linecache
import os
import pathlib
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from typing import Any

import pytest

from nbflow._core.hashing.encoder import UnhashableInputError, hash_parameters, stable_hash
from nbflow._core.hashing.source import source_hash

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_python(code: str, hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# ---- stable_hash: determinism ---------------------------------------------------------------------

CROSS_PROCESS_SCRIPT = textwrap.dedent(
    """
    import dataclasses, datetime, decimal, enum, json, pathlib, uuid
    import numpy as np, pandas as pd
    from nbflow._core.hashing.encoder import stable_hash, hash_parameters

    class Point:                      # a plain class defined in __main__
        def __init__(self, x, y):
            self.x, self.y = x, y

    @dataclasses.dataclass
    class Config:
        name: str
        tags: set

    class Color(enum.Enum):
        RED = 1

    def helper(x):
        return x + 1

    values = {
        "strings": {"alpha", "beta", "gamma", "delta", "epsilon"},   # set order follows the hash seed
        "mixed": {1, "a", (2, "b"), frozenset({"x", "y"}), None},
        "nested": {"k%d" % i: [i, str(i), {"i": i}] for i in range(20)},
        "objects": [Point(1, 2), Config("c", {"p", "q", "r"}), Color.RED],
        "stdlib": (datetime.datetime(2024, 5, 1, 6, 0, tzinfo=datetime.timezone.utc),
                   decimal.Decimal("1.50"), uuid.UUID(int=7), pathlib.PurePosixPath("/a/b"), range(3)),
        "function": helper,
        "array": np.arange(12.0).reshape(3, 4)[:, ::2],
        "frame": pd.DataFrame({"n": [1, 2, 3], "s": ["x", "y", "z"], "o": [{"a"}, None, [1]]}),
    }
    out = {name: stable_hash(value) for name, value in values.items()}
    out["parameters"] = hash_parameters({"x": 1, "name": "abc"})
    print(json.dumps(out, sort_keys=True))
    """
)


@pytest.mark.slow  # subprocesses
def test_equal_inputs_hash_equal_in_separate_processes_with_different_hash_seeds() -> None:
    pytest.importorskip("numpy")
    pytest.importorskip("pandas")
    first = json.loads(run_python(CROSS_PROCESS_SCRIPT, "1"))
    second = json.loads(run_python(CROSS_PROCESS_SCRIPT, "2"))
    assert first == second
    assert len(set(first.values())) == len(first)  # and they are not all one constant
    # the same values built here, in the test process, hash the same too
    assert first["parameters"] == hash_parameters({"name": "abc", "x": 1})
    assert first["strings"] == stable_hash({"epsilon", "delta", "gamma", "beta", "alpha"})


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({"a": 1, "b": 2, "c": 3}, {"c": 3, "a": 1, "b": 2}),
        ({1: "x", "1": "y", (1, 2): "z"}, {(1, 2): "z", "1": "y", 1: "x"}),
        ({frozenset({1}): 1, frozenset({2}): 2}, {frozenset({2}): 2, frozenset({1}): 1}),
        ({"b", "a", "c"}, {"c", "b", "a"}),
        ({3, "x", (1, 2), None}, {None, (1, 2), "x", 3}),
        (frozenset({frozenset({1, 2}), frozenset({3})}), frozenset({frozenset({3}), frozenset({2, 1})})),
    ],
)
def test_dict_and_set_order_does_not_change_the_key(one: Any, other: Any) -> None:
    assert stable_hash(one) == stable_hash(other)


def test_ordered_dict_order_changes_the_key_as_it_changes_equality() -> None:
    one = collections.OrderedDict([("a", 1), ("b", 2)])
    other = collections.OrderedDict([("b", 2), ("a", 1)])
    assert stable_hash(one) != stable_hash(other)
    assert stable_hash(one) == stable_hash(collections.OrderedDict([("a", 1), ("b", 2)]))


def test_type_and_structure_are_part_of_the_key() -> None:
    values = [
        1, 1.0, True, "1", b"1", bytearray(b"1"), [1], (1,), {1}, frozenset({1}), {1: None}, None,
        ("ab", "c"), ("a", "bc"), [1, [2]], [[1], 2], {"a": 1}, [("a", 1)], 0.0, -0.0, 2**70, 1j,
    ]  # fmt: skip
    assert len({stable_hash(v) for v in values}) == len(values)
    assert stable_hash(1, 2) != stable_hash((1, 2)) != stable_hash(2, 1)


class Shape(enum.Enum):
    CIRCLE = "circle"
    SQUARE = "square"


@dataclasses.dataclass
class Settings:
    name: str
    sizes: list[int]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)


class Plain:
    def __init__(self, x: Any, y: Any) -> None:
        self.x, self.y = x, y


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b


Pair = collections.namedtuple("Pair", "left right")


def make_values(variant: int) -> dict[str, Any]:
    """Fresh objects each call; variant 1 differs from variant 0 in every entry."""
    v = variant
    return {
        "datetime": dt.datetime(2024, 1, 1 + v, tzinfo=dt.UTC),
        "naive datetime": dt.datetime(2024, 1, 1, 12, v),
        "date": dt.date(2024, 1, 1 + v),
        "time": dt.time(6, v),
        "timedelta": dt.timedelta(seconds=30 + v),
        "decimal": decimal.Decimal(f"1.{v}5"),
        "uuid": uuid.UUID(int=v),
        "path": pathlib.Path(f"/data/{v}.csv"),
        "range": range(v, 10),
        "slice": slice(1, 5 + v),
        "enum": [Shape.CIRCLE, Shape.SQUARE][v],
        "dataclass": Settings("s", [1, 2 + v]),
        "plain object": Plain([1, 2], {"k": v}),
        "slots object": Slotted(1, v),
        "namedtuple": Pair(1, v),
        "counter": collections.Counter("abc" + "d" * v),
        "complex": complex(1, v),
        "memoryview": memoryview(bytes([1, 2, v])),
        "big int": 10**400 + v,
        "float": 0.1 + v,
        "bytes": b"x" * (200_000 + v),  # larger than the staging buffer: hashed in place
        "builtin function": [len, abs][v],
        "bound method": [[1].append, [2].append][v],
    }


def test_values_hash_by_content_not_identity() -> None:
    first, again, changed = make_values(0), make_values(0), make_values(1)
    for name in first:
        assert stable_hash(first[name]) == stable_hash(again[name]), name
        assert stable_hash(first[name]) != stable_hash(changed[name]), name


def test_dataclass_fields_that_do_not_compare_still_count() -> None:
    assert stable_hash(Settings("s", [1], {"a": 1})) != stable_hash(Settings("s", [1], {"a": 2}))


def test_objects_differ_by_class_even_with_the_same_data() -> None:
    @dataclasses.dataclass
    class Other:
        name: str
        sizes: list[int]
        extra: dict[str, Any]

    assert stable_hash(Settings("s", [1], {})) != stable_hash(Other("s", [1], {}))


def test_cycles_hash_and_stay_deterministic() -> None:
    def make() -> tuple[list[Any], dict[str, Any]]:
        loop: list[Any] = [1]
        loop.append(loop)
        node: dict[str, Any] = {"name": "n"}
        node["self"] = node
        return loop, node

    assert stable_hash(*make()) == stable_hash(*make())
    obj = Plain(1, None)
    obj.y = obj
    assert stable_hash(obj) == stable_hash(obj)


def test_pydantic_models_hash_by_fields() -> None:
    import pydantic

    class Params(pydantic.BaseModel):
        n: int
        names: list[str] = []

    assert stable_hash(Params(n=1, names=["a"])) == stable_hash(Params(n=1, names=["a"]))
    assert stable_hash(Params(n=1)) != stable_hash(Params(n=2))


# ---- numpy and pandas -----------------------------------------------------------------------------


def test_numpy_arrays_hash_by_dtype_shape_and_values_whatever_the_memory_layout() -> None:
    np = pytest.importorskip("numpy")
    a = np.arange(48, dtype=np.float64).reshape(6, 8)
    assert stable_hash(a[:, ::3]) == stable_hash(a[:, ::3].copy())  # non-contiguous view
    assert stable_hash(np.asfortranarray(a)) == stable_hash(a)
    assert stable_hash(a.T) == stable_hash(np.ascontiguousarray(a.T))
    assert stable_hash(a) != stable_hash(a.reshape(8, 6))
    assert stable_hash(a) != stable_hash(a.astype(np.float32))
    big = np.zeros(1_000_000)
    changed = big.copy()
    changed[-1] = 1.0
    assert stable_hash(big) == stable_hash(np.zeros(1_000_000))
    assert stable_hash(big) != stable_hash(changed)
    days = np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]")
    assert stable_hash(days) != stable_hash(days.astype("datetime64[s]"))
    objects = np.array([{"a": 1}, [1, 2], None], dtype=object)
    assert stable_hash(objects) == stable_hash(np.array([{"a": 1}, [1, 2], None], dtype=object))
    assert stable_hash(np.float64(1.5)) == stable_hash(np.float64(1.5)) != stable_hash(np.float32(1.5))
    assert stable_hash(np.float64(1.5)) != stable_hash(1.5)


def test_pandas_objects_hash_by_values_index_columns_and_dtypes() -> None:
    pd = pytest.importorskip("pandas")

    def frame() -> Any:
        return pd.DataFrame(
            {
                "n": [1, 2, 3],
                "s": ["x", "y", "z"],
                "c": pd.Categorical(["u", "v", "u"]),
                "t": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
                "o": [{"a": 1}, None, [1, 2]],
            }
        )

    base = stable_hash(frame())
    assert stable_hash(frame()) == base
    variants = [frame() for _ in range(5)]
    variants[0].loc[2, "s"] = "w"
    variants[1] = variants[1].rename(columns={"n": "m"})
    variants[2]["n"] = variants[2]["n"].astype("float64")
    variants[3].index = [10, 11, 12]
    variants[4]["o"] = [{"a": 2}, None, [1, 2]]
    assert len({stable_hash(v) for v in variants} | {base}) == 6
    series = pd.Series([1.0, 2.0], name="price")
    assert stable_hash(series) == stable_hash(pd.Series([1.0, 2.0], name="price"))
    assert stable_hash(series) != stable_hash(series.rename("cost"))
    assert stable_hash(pd.Index(["a", "b"])) != stable_hash(pd.Index(["b", "a"]))


def test_hashing_never_imports_numpy_pandas_or_ipython() -> None:
    code = textwrap.dedent(
        """
        import sys
        from nbflow._core.hashing.encoder import stable_hash
        from nbflow._core.hashing.source import source_hash
        class Thing:
            pass
        stable_hash([1, "a", {2.0}, Thing(), len, print], {"k": (None, b"x")})
        source_hash(stable_hash)
        print(sorted(m for m in ("numpy", "pandas", "IPython", "pydantic") if m in sys.modules))
        """
    )
    assert run_python(code, "0").strip() == "[]"


# ---- unhashable inputs ----------------------------------------------------------------------------


def test_unhashable_input_names_the_argument_the_path_and_the_type() -> None:
    with socket.socket() as conn:
        with pytest.raises(UnhashableInputError) as caught:
            hash_parameters({"n": 1, "options": {"retries": 3, "clients": [None, conn]}})
    error = caught.value
    assert error.argument == "options"
    assert error.path == "parameters['options']['clients'][1]"
    assert error.type_name == "socket.socket"
    assert "parameters['options']['clients'][1] -> <socket.socket>" in str(error)
    assert "INPUTS - 'options'" in str(error)  # says how to fix it
    assert isinstance(error, TypeError)


def test_unhashable_attribute_of_an_object_is_named_by_attribute() -> None:
    holder = Plain(1, threading.Lock())
    with pytest.raises(UnhashableInputError, match=r"parameters\['cfg'\]\.y -> <_thread\.lock>"):
        hash_parameters({"cfg": holder})


@pytest.mark.parametrize(
    "value",
    [(i for i in range(3)), threading.Lock(), {threading.RLock(): 1}, {"f": open(os.devnull)}],
    ids=["generator", "lock", "lock as key", "file"],
)
def test_objects_without_reproducible_content_are_unhashable(value: Any) -> None:
    with pytest.raises(UnhashableInputError, match=r"cannot hash objs\[0\]"):
        stable_hash(value)


def test_excluded_parameters_are_not_hashed_at_all() -> None:
    with socket.socket() as conn:
        key = hash_parameters({"x": 1, "conn": conn}, exclude={"conn"})
    assert key == hash_parameters({"x": 1})
    assert key != hash_parameters({"x": 2})


# ---- source_hash ----------------------------------------------------------------------------------


class Notebook:
    """A namespace that runs source the way IPython runs cells: each cell is registered in
    linecache under its own name, so inspect.getsource finds it."""

    def __init__(self) -> None:
        self.ns: dict[str, Any] = {"__name__": "__main__"}
        self.cells = 0

    def run(self, source: str) -> None:
        self.cells += 1
        name = f"<cell-{id(self)}-{self.cells}>"
        source = textwrap.dedent(source)
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        exec(compile(source, name, "exec"), self.ns)

    def hash(self, name: str) -> str:
        return source_hash(self.ns[name])


@pytest.fixture()
def nb() -> Notebook:
    notebook = Notebook()
    notebook.run(
        """
        import json
        SCALE = 2
        def helper(x):
            return x * SCALE
        def unrelated():
            return 1
        def task(x):
            return json.dumps(helper(x))
        """
    )
    return notebook


def test_editing_a_helper_the_task_calls_changes_the_task_hash(nb: Notebook) -> None:
    before = nb.hash("task")
    nb.run("def helper(x):\n    return x * SCALE + 1\n")
    assert nb.hash("task") != before


def test_rerunning_an_unchanged_cell_or_editing_an_unrelated_one_keeps_the_hash(nb: Notebook) -> None:
    before = nb.hash("task")
    nb.run("def helper(x):\n    return x * SCALE\n")
    nb.run("def unrelated():\n    return 2\n")
    assert nb.hash("task") == before


def test_module_level_constants_the_task_uses_are_hashed_by_value(nb: Notebook) -> None:
    before = nb.hash("task")
    nb.run("SCALE = 3")
    assert nb.hash("task") != before
    nb.run("SCALE = 2")
    assert nb.hash("task") == before


def test_library_code_is_identified_by_name_not_source(nb: Notebook) -> None:
    before = nb.hash("task")
    nb.run("import pickle as json")  # the task now calls another library's dumps
    assert nb.hash("task") != before
    nb.run("import json")
    assert nb.hash("task") == before


def test_decorator_arguments_of_the_task_do_not_change_its_hash(nb: Notebook) -> None:
    nb.run(
        """
        def task_decorator(**options):
            return lambda fn: fn
        @task_decorator(retries=1)
        def step(x):
            return helper(x)
        """
    )
    before = nb.hash("step")
    nb.run("@task_decorator(retries=5)\ndef step(x):\n    return helper(x)\n")
    assert nb.hash("step") == before
    nb.run("@task_decorator(retries=5)\ndef step(x):\n    return helper(x) + 1\n")
    assert nb.hash("step") != before


def test_recursion_and_mutual_recursion_terminate_and_see_edits(nb: Notebook) -> None:
    nb.run(
        """
        def fact(n):
            return 1 if n < 2 else n * fact(n - 1)
        def is_even(n):
            return n == 0 or is_odd(n - 1)
        def is_odd(n):
            return n != 0 and is_even(n - 1)
        """
    )
    fact, even = nb.hash("fact"), nb.hash("is_even")
    assert nb.hash("fact") == fact
    nb.run("def is_odd(n):\n    return n != 0 and not is_even(n - 1) or False\n")
    assert nb.hash("is_even") != even
    assert nb.hash("fact") == fact


def test_wrapped_functions_closures_lambdas_methods_and_classes_follow_helpers(nb: Notebook) -> None:
    nb.run(
        """
        import functools
        def logged(fn):
            @functools.wraps(fn)
            def wrapper(*args):
                return fn(*args)
            return wrapper
        @logged
        def decorated(x):
            return helper(x)
        def make_adder(n):
            def add(x):
                return helper(x) + n
            return add
        add_two = make_adder(2)
        square = lambda x: helper(x) ** 2
        class Model:
            factor = 3
            def predict(self, x):
                return helper(x) * self.factor
        def uses_model(x):
            return Model().predict(x)
        model = Model()
        """
    )
    names = ["decorated", "add_two", "square", "uses_model", "Model"]
    before = {name: nb.hash(name) for name in names}
    method = source_hash(nb.ns["model"].predict)
    nb.run("def helper(x):\n    return x * SCALE - 1\n")
    assert all(nb.hash(name) != before[name] for name in names)
    assert source_hash(nb.ns["model"].predict) != method


def test_changes_that_bypass_a_rerun_of_the_task_cell_are_noticed(nb: Notebook) -> None:
    nb.run(
        """
        def counter():
            step = 1
            def bump(x):
                return x + step
            def set_step(n):
                nonlocal step
                step = n
            return bump, set_step
        bump, set_step = counter()
        class Model:
            def predict(self, x):
                return x
        def uses_model(x):
            return Model().predict(x)
        """
    )
    bump, model = nb.hash("bump"), nb.hash("uses_model")
    nb.ns["set_step"](2)  # a closure cell changes
    nb.ns["Model"].extra = lambda self: helper(1)  # noqa: F821 - a member is added to a class (never called)
    assert nb.hash("bump") != bump
    assert nb.hash("uses_model") != model


def test_helpers_in_a_user_module_are_followed_but_installed_libraries_are_not(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, nb: Notebook
) -> None:
    module = tmp_path / "my_helpers.py"
    module.write_text("def clean(x):\n    return x.strip()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    nb.run("import my_helpers\ndef task2(x):\n    return my_helpers.clean(x)\n")
    before = nb.hash("task2")
    module.write_text("def clean(x):\n    return x.strip().lower()\n")
    nb.run("import importlib\nimportlib.reload(my_helpers)")
    assert nb.hash("task2") != before
    sys.modules.pop("my_helpers", None)


def test_functions_without_source_hash_by_their_code_deterministically() -> None:
    def compiled(body: str, filename: str) -> Any:
        ns: dict[str, Any] = {"__name__": "__main__"}
        exec(compile(f"def f(x):\n    return {body}\n", filename, "exec"), ns)  # no linecache entry
        return ns["f"]

    assert source_hash(compiled("x + 1", "<a>")) == source_hash(compiled("x + 1", "<b>"))
    assert source_hash(compiled("x + 1", "<a>")) != source_hash(compiled("x + 2", "<a>"))


def test_a_user_function_passed_as_an_argument_keys_by_its_source(nb: Notebook) -> None:
    before = hash_parameters({"fn": nb.ns["task"]})
    nb.run("def helper(x):\n    return -x\n")
    assert hash_parameters({"fn": nb.ns["task"]}) != before
    assert stable_hash(json.dumps) == stable_hash(json.dumps) != stable_hash(json.loads)


# ---- real kernels ---------------------------------------------------------------------------------

KERNEL_CELLS = [
    "from nbflow._core.hashing.source import source_hash",
    "SCALE = 2\ndef helper(x):\n    return x * SCALE",
    "def unrelated():\n    return 'a'",
    "import json\ndef task(x):\n    return json.dumps(helper(x))",
    "print(source_hash(task))",
]


def run_in_kernel(cells: list[str]) -> list[str]:
    """Execute cells in a fresh Jupyter kernel; return what each cell printed."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3")
    client.execute(cwd=str(REPO))
    printed = []
    for cell in notebook.cells:
        printed.append("".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream").strip())
    return printed


@pytest.mark.slow
def test_notebook_task_hash_is_stable_across_kernels_and_follows_helper_cells(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    first = run_in_kernel(
        [
            *KERNEL_CELLS,
            "def unrelated():\n    return 'b'\nprint(source_hash(task))",
            "def helper(x):\n    return x * SCALE + 1\nprint(source_hash(task))",
        ]
    )
    # the second kernel runs an extra cell first, so cell numbers and file names differ
    second = run_in_kernel(["x = 'an extra cell'", *KERNEL_CELLS])
    task_hash = first[4]
    assert len(task_hash) == 64
    assert second[-1] == task_hash
    assert first[5] == task_hash  # unrelated cell edited
    assert first[6] != task_hash  # helper cell edited


def test_threads_hashing_tasks_at_once_all_get_a_hash(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Task runs of tasks not hashed yet, on pool threads, read and parse their sources at once. Before
    # 3.11.8 and 3.12.2, CPython's AST constructor kept its recursion depth interpreter-wide, and a
    # thread switch inside a parse (a garbage collection running Python code) made another parse fail
    # with "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905): the task then
    # ran uncached, with a warning.
    import gc
    import importlib

    body = "\n".join(f"    v{i} = [y + {i} for y in range(x)] if x else {{'k': ({i}, x)}}" for i in range(150))
    (tmp_path / "many_tasks.py").write_text("".join(f"def f{n}(x):\n{body}\n    return x\n\n\n" for n in range(24)))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("many_tasks")
    functions = [getattr(module, f"f{n}") for n in range(24)]

    def collecting(phase: str, info: dict[str, int]) -> None:
        sum(range(100))  # Python code inside a collection: the interpreter may switch threads here

    errors: list[BaseException] = []

    def hash_all(order: int) -> None:
        try:
            for fn in functions[order:] + functions[:order]:
                source_hash(fn)
        except BaseException as exc:  # reported below, not lost on a thread
            errors.append(exc)

    gc.callbacks.append(collecting)
    try:
        threads = [threading.Thread(target=hash_all, args=(n * 6,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        gc.callbacks.remove(collecting)
    assert not errors, errors
