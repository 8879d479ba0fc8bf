"""Cache policies: what a task's cache key is made of (Prefect's names and ``compute_key`` signature).

>>> from nbflow.cache_policies import INPUTS, TASK_SOURCE
>>> policy = INPUTS - "verbose" + TASK_SOURCE       # inputs except `verbose`, plus the source

``DEFAULT`` is ``INPUTS + TASK_SOURCE``: unlike Prefect it has no ``RUN_ID``, so a task with
``cache_policy=DEFAULT`` hits across flow runs, processes and kernel restarts (use
``DEFAULT + RUN_ID`` for Prefect's "only within this flow run"). Every policy's key is namespaced by
the task's name when stored, so two different tasks never share an entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from nbflow.exceptions import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "CachePolicy",
    "CacheKeyFnPolicy",
    "CompoundCachePolicy",
    "Inputs",
    "TaskSource",
    "FlowParameters",
    "RunId",
    "NoCache",
    "INPUTS",
    "TASK_SOURCE",
    "FLOW_PARAMETERS",
    "RUN_ID",
    "NO_CACHE",
    "NONE",
    "DEFAULT",
]

_ISOLATION_LEVELS = ("READ_COMMITTED", "SERIALIZABLE")


@dataclasses.dataclass(frozen=True)
class CachePolicy:
    """Base class: subclass it and implement ``compute_key`` for a policy of your own.

    ``lock=True`` (see ``configure``) makes concurrent callers of the same missing key, in any
    process, wait for the first one to compute it instead of all computing it.
    """

    lock: bool = dataclasses.field(default=False, kw_only=True)
    lock_timeout: float | None = dataclasses.field(default=None, kw_only=True)

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        """The key for one call, or None for "do not cache this call".

        ``task_ctx`` has ``.task`` and ``.task_run``; ``inputs`` are the call's bound arguments.
        May raise ``UnhashableInputError``: the task then runs uncached with one warning.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement compute_key()")

    @classmethod
    def from_cache_key_fn(cls, cache_key_fn: Callable[[Any, dict[str, Any]], str | None]) -> CacheKeyFnPolicy:
        """A policy from a Prefect-style ``cache_key_fn(context, parameters)`` (to combine or lock it)."""
        return CacheKeyFnPolicy(cache_key_fn=cache_key_fn)

    def configure(
        self,
        *,
        lock: bool | None = None,
        lock_timeout: float | None = None,
        isolation_level: str | None = None,
        **unsupported: Any,
    ) -> CachePolicy:
        """A copy with locking switched on or off: ``INPUTS.configure(lock=True)``.

        ``isolation_level="SERIALIZABLE"`` (Prefect's spelling) also turns locking on.
        ``lock_timeout`` (seconds) bounds the wait for another process; after it, the task runs.
        """
        if unsupported:
            names = ", ".join(sorted(unsupported))
            raise ArgumentTypeError(
                f"configure() got {names}: nbflow keeps cache keys and locks in $NBFLOW_HOME and takes "
                "only lock=, lock_timeout= and isolation_level="
            )
        changes: dict[str, Any] = {}
        if isolation_level is not None:
            if isolation_level not in _ISOLATION_LEVELS:
                raise InvalidArgumentError(f"isolation_level must be one of {_ISOLATION_LEVELS}, got {isolation_level!r}")
            changes["lock"] = isolation_level == "SERIALIZABLE"
        if lock is not None:
            changes["lock"] = bool(lock)
        if lock_timeout is not None:
            if not isinstance(lock_timeout, (int, float)) or lock_timeout < 0:
                raise InvalidArgumentError(f"lock_timeout must be a number of seconds >= 0, got {lock_timeout!r}")
            changes["lock_timeout"] = float(lock_timeout)
        return dataclasses.replace(self, **changes)

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        if isinstance(other, NoCache):
            return self
        return CompoundCachePolicy(policies=(self, other))

    def __sub__(self, argument: str) -> CachePolicy:
        _check_argument(argument)
        raise ArgumentTypeError(
            f"{self!r} - {argument!r}: only a policy that hashes inputs (INPUTS, DEFAULT) can leave an argument out"
        )


def _check_argument(argument: Any) -> None:
    if not isinstance(argument, str):
        raise ArgumentTypeError(f"leave an argument out by its name, e.g. INPUTS - 'verbose'; got {argument!r}")


@dataclasses.dataclass(frozen=True)
class Inputs(CachePolicy):
    """The call's arguments, hashed by content; ``exclude`` names arguments to leave out."""

    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude", tuple(sorted(set(self.exclude))))

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        from nbflow._core.hashing.encoder import hash_parameters

        return hash_parameters(inputs, self.exclude)

    def __sub__(self, argument: str) -> CachePolicy:
        _check_argument(argument)
        return dataclasses.replace(self, exclude=(*self.exclude, argument))

    def __repr__(self) -> str:
        return "INPUTS" + "".join(f" - {name!r}" for name in self.exclude) + _lock_repr(self)


@dataclasses.dataclass(frozen=True)
class TaskSource(CachePolicy):
    """The task's source, and the notebook/user-code helpers and constants it uses, transitively."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        from nbflow._core.hashing.source import source_hash

        return source_hash(task_ctx.task.fn)

    def __repr__(self) -> str:
        return "TASK_SOURCE" + _lock_repr(self)


@dataclasses.dataclass(frozen=True)
class FlowParameters(CachePolicy):
    """The parameters of the flow run the task runs in."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        from nbflow._core.hashing.encoder import hash_parameters

        return hash_parameters(flow_parameters or {})

    def __repr__(self) -> str:
        return "FLOW_PARAMETERS" + _lock_repr(self)


@dataclasses.dataclass(frozen=True)
class RunId(CachePolicy):
    """The id of the flow run: entries are reused only within that flow run."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        task_run = task_ctx.task_run
        return str(task_run.flow_run_id or task_run.id)

    def __repr__(self) -> str:
        return "RUN_ID" + _lock_repr(self)


@dataclasses.dataclass(frozen=True)
class NoCache(CachePolicy):
    """Never cached, never persisted, never reused by a rerun: for tasks with side effects."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        return None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        return other  # as in Prefect: NO_CACHE + X is X

    def __sub__(self, argument: str) -> CachePolicy:
        _check_argument(argument)
        return self

    def __repr__(self) -> str:
        return "NO_CACHE"


@dataclasses.dataclass(frozen=True)
class CacheKeyFnPolicy(CachePolicy):
    """Prefect's ``cache_key_fn(context, parameters) -> str | None`` as a policy."""

    cache_key_fn: Callable[[Any, dict[str, Any]], str | None] | None = None

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        if self.cache_key_fn is None:
            return None
        key = self.cache_key_fn(task_ctx, inputs)
        if key is not None and not isinstance(key, str):
            raise ArgumentTypeError(f"cache_key_fn {_name(self.cache_key_fn)} must return a str or None, got {type(key).__name__}")
        return key

    def __repr__(self) -> str:
        return f"CacheKeyFnPolicy({_name(self.cache_key_fn)})" + _lock_repr(self)


@dataclasses.dataclass(frozen=True)
class CompoundCachePolicy(CachePolicy):
    """Several policies at once (``INPUTS + TASK_SOURCE``): the key changes when any part changes.

    Parts are flattened, ``Inputs`` parts merged (their exclusions add up), and the key does not
    depend on the order the parts were added in. Parts returning None are skipped; if all do, the
    call is not cached.
    """

    policies: tuple[CachePolicy, ...] = ()

    def __post_init__(self) -> None:
        flat: list[CachePolicy] = []
        lock, timeout = self.lock, self.lock_timeout
        for policy in _flatten(self.policies):  # a lock on any part locks the whole
            lock = lock or policy.lock
            timeout = timeout if timeout is not None else policy.lock_timeout
            flat.append(dataclasses.replace(policy, lock=False, lock_timeout=None))
        inputs = [p for p in flat if isinstance(p, Inputs)]
        parts = [p for p in flat if not isinstance(p, (Inputs, NoCache))]
        if inputs:  # first, so DEFAULT reads "INPUTS + TASK_SOURCE"
            parts.insert(0, Inputs(exclude=tuple(name for p in inputs for name in p.exclude)))
        unique: list[CachePolicy] = []
        for part in parts:
            if part not in unique:
                unique.append(part)
        object.__setattr__(self, "policies", tuple(unique))
        object.__setattr__(self, "lock", lock)
        object.__setattr__(self, "lock_timeout", timeout)

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        labelled = []
        for policy in self.policies:
            key = policy.compute_key(task_ctx, inputs, flow_parameters, **kwargs)
            if key is not None:
                labelled.append(f"{type(policy).__name__}={key}")
        if not labelled:
            return None
        labelled.sort()  # INPUTS + TASK_SOURCE and TASK_SOURCE + INPUTS are the same key
        return hashlib.sha256("\0".join(labelled).encode("utf-8", "surrogatepass")).hexdigest()

    def __sub__(self, argument: str) -> CachePolicy:
        _check_argument(argument)
        if not any(isinstance(p, Inputs) for p in self.policies):
            return super().__sub__(argument)
        parts = tuple(p - argument if isinstance(p, Inputs) else p for p in self.policies)
        return dataclasses.replace(self, policies=parts)

    def __repr__(self) -> str:
        return " + ".join(repr(p) for p in self.policies) + _lock_repr(self)


def _flatten(policies: Iterable[CachePolicy]) -> Iterable[CachePolicy]:
    """The leaf policies; a compound's own lock settings move onto its first leaf."""
    for policy in policies:
        if not isinstance(policy, CachePolicy):
            raise ArgumentTypeError(f"cache policies combine only with cache policies, got {policy!r}")
        if isinstance(policy, CompoundCachePolicy):
            leaves = list(_flatten(policy.policies))
            if leaves and policy.lock:
                leaves[0] = dataclasses.replace(leaves[0], lock=True, lock_timeout=policy.lock_timeout)
            yield from leaves
        else:
            yield policy


def _lock_repr(policy: CachePolicy) -> str:
    if not policy.lock:
        return ""
    timeout = f", lock_timeout={policy.lock_timeout}" if policy.lock_timeout is not None else ""
    return f".configure(lock=True{timeout})"


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


INPUTS = Inputs()
TASK_SOURCE = TaskSource()
FLOW_PARAMETERS = FlowParameters()
RUN_ID = RunId()
NO_CACHE = NoCache()
NONE = NO_CACHE  # Prefect's other name for it
DEFAULT = INPUTS + TASK_SOURCE
