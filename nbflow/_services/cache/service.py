"""The result cache service (``runtime.cache``): keys, hits, persisted results and key locks.

The task engine asks it two things: ``lookup`` before a task runs (a ``Cached`` state ends the run
without executing it) and ``store`` after it completed. The rules:

- Every completed result is persisted under the task's key -- its cache policy's, else ``DEFAULT``
  (inputs + task source) -- unless ``persist_result=False``, ``NO_CACHE``, the setting
  ``results_persist`` is off (and the task has no cache policy), or the result cannot be pickled.
- A normal run looks a key up only for tasks that asked for caching (``cache_policy``,
  ``cache_key_fn`` or ``cache_expiration``); a rerun (``flow.rerun()``) looks up every task.
- The key is computed before the task runs, from its inputs as they were passed.
- The cache never fails a run: a broken entry, an unhashable input, an unpicklable result, a
  deleted or unwritable folder each give one warning and the task simply runs (or is not saved).
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbflow._core import states
from nbflow._core.cache_policies import DEFAULT, CacheKeyFnPolicy, CachePolicy, NoCache
from nbflow._core.events import StateChanged
from nbflow._core.hashing.encoder import UnhashableInputError
from nbflow._core.home import check_private_dir
from nbflow._core.records import FlowRun
from nbflow._engine.context import FlowRunContext, TaskRunContext
from nbflow._engine.logging import log
from nbflow._services.cache import files
from nbflow._services.cache.disk import ResultDisk, StoredFile
from nbflow._services.cache.files import ResultFile
from nbflow._services.cache.locks import LOCKS_SUPPORTED, KeyLocks
from nbflow._services.cache.signing import BadTag, Signer
from nbflow._services.cache.writer import Pending, Writer
from nbflow.exceptions import ArgumentTypeError

if TYPE_CHECKING:
    from nbflow._core.records import TaskRun
    from nbflow._core.states import State
    from nbflow._engine.task import Task

__all__ = ["ResultCache", "in_rerun", "task_policy"]

_KEY_PREFIX = b"nbflow-result:1\0"  # bump to orphan every old entry if the stored format changes
_TOUCH_EVERY = 60.0  # seconds: LRU order needs no finer access times than this
_MAX_REMEMBERED = 50_000
_FLUSH_AT_END_SECONDS = 60.0
_WAIT_FOR_WRITER_SECONDS = 600.0  # a reader waits this long for another process writing a large result
_FINAL = states.FINAL_TYPES


class ResultCache:
    """Result cache of one runtime: ``$NBFLOW_HOME/cache`` plus its writer and key locks."""

    def __init__(self, home: Path, size_limit: int, persist_by_default: bool, clock: Any, bus: Any) -> None:
        # Refused up front (two stats), as the run store refuses such a home: whoever can write the
        # cache folder can plant what we unpickle. Checked again when the folder is (re)opened.
        check_private_dir(Path(home))
        check_private_dir(Path(home) / "cache", "The result cache folder")
        self.disk = ResultDisk(Path(home) / "cache", size_limit)
        self.signer = Signer(Path(home))
        self.locks = KeyLocks(Path(home) / "cache-locks")
        self.writer = Writer(self.disk, self._writer_failed, sign=self.signer.tag)
        self.persist_by_default = persist_by_default
        self.clock = clock
        self.bus = bus
        self._warned: set[tuple[Any, ...]] = set()
        self._touched: dict[int, float] = {}
        self._held: dict[str, tuple[str, int]] = {}  # task run id -> (key, lock handle)
        self._policies: dict[int, tuple[Any, CachePolicy, bool]] = {}
        self._swept = False  # temp files of killed writers removed (once per process)
        bus.subscribe(self._on_event)

    @classmethod
    def attach(cls, runtime: Any) -> ResultCache:
        settings = runtime.settings
        return cls(settings.home, settings.cache_size_limit, settings.results_persist, runtime.clock, runtime.bus)

    # --- what the engine calls -----------------------------------------------------------------
    def lookup(self, task: Task, task_run: TaskRun, parameters: dict[str, Any], ctx: FlowRunContext) -> State | None:
        """The ``Cached`` state of a hit, or None to run the task (setting ``task_run.cache_key``)."""
        state = self._lookup(task, task_run, parameters, ctx)
        if self.disk.notices:
            self._tell(ctx, task_run)
        return state

    def _lookup(self, task: Task, task_run: TaskRun, parameters: dict[str, Any], ctx: FlowRunContext) -> State | None:
        options = task.options
        if options.persist_result is False:
            return None  # never written, so nothing to find
        try:
            policy, explicit = self.policy(task)
        except TypeError as exc:
            self._warn(ctx, task_run, ("policy", task.name), f"Task {task.name!r} runs uncached: {exc}")
            return None
        if policy.__class__ is NoCache:
            return None
        look = explicit or in_rerun(ctx)
        if not look and not self._persists(task, explicit):
            return None
        key = self._key(task, task_run, parameters, ctx, policy)
        if key is None:
            return None
        task_run.cache_key = key
        if not look or options.refresh_cache:
            return None
        try:
            hit = self._hit(key, task, task_run, ctx)
            if hit is None and policy.lock:
                hit = self._lock_or_hit(key, task, task_run, ctx, policy)
            return hit
        except Exception as exc:  # a cache that cannot be read is a miss, never a failed task
            self._warn_unavailable(ctx, task_run, exc)
            return None

    def store(self, task: Task, task_run: TaskRun, parameters: dict[str, Any], state: State, ctx: FlowRunContext) -> None:
        """Persist a completed result under ``task_run.cache_key`` (set by ``lookup``)."""
        key = task_run.cache_key
        held = self._held.pop(task_run.id, None) if self._held else None
        try:
            if key is None:
                return
            policy, explicit = self.policy(task)
            if not self._persists(task, explicit):
                return
            try:
                # Pickled here, not on the writer thread: what is saved is the result as the task
                # returned it, even if later code mutates the object in place. A large result is
                # not copied: its buffers are written to its file before this returns, unless
                # they cannot change (bytes), which the background writes.
                data = files.split(state.data)
            except Exception as exc:
                self._warn(ctx, task_run, ("unpicklable", task.name), _unpicklable_message(task, task_run, state.data, exc))
                return
            size = len(data) if data.__class__ is bytes else data.size
            if size > self.disk.size_limit:
                self._warn(ctx, task_run, ("toolarge", task.name),
                           f"Result of task {task.name!r} is not persisted: {size:,} bytes pickled is more than the "
                           f"whole result cache (NBFLOW_CACHE_SIZE_LIMIT={self.disk.size_limit:,})")
                return
            expiration = task.options.cache_expiration
            expire_at = None if expiration is None else self.clock.now() + _seconds(expiration)
            if data.__class__ is not bytes:
                self._store_file(key, data, expire_at, task.name, held is not None)
            elif held is not None:
                # Another process may be waiting on this key: it must find the result on disk.
                with self.disk.guard:
                    self.disk.write([("set", Pending(key, data, expire_at, task.name, self.signer.tag(data, key)))])
            else:
                self.writer.put(key, data, expire_at, task.name)  # tagged on the writer thread
        except Exception as exc:
            self._warn_unavailable(ctx, task_run, exc)
        finally:
            if held is not None:
                self.locks.release(*held)

    def _store_file(self, key: str, parts: files.Parts, expire_at: float | None, tag: str, locked: bool) -> None:
        """A large result: a file of its own, written now or (if it cannot change, and the background
        holds less than ``files.MAX_BACKGROUND_BYTES``) by the writer's file thread."""
        directory = self.disk.directory
        if not self._swept:
            self._swept = True
            files.sweep(directory)
        background = not locked and parts.frozen and self.writer.files.reserve(parts.size)
        try:
            file = ResultFile(directory, parts, self.signer, key)
        except BaseException:
            if background:
                self.writer.files.release(parts.size)
            raise
        if not background:
            try:
                file.write()
            except BaseException:
                file.abandon()
                raise
            file.close()
        if not locked:
            self.writer.put_file(key, file, expire_at, tag)
            return
        try:  # recorded at once: another process may be waiting on this key's lock
            with self.disk.guard:
                self.disk.write([("set", Pending(key, None, expire_at, tag, file=file))])
        except BaseException:
            file.abandon()
            raise

    # --- policies and keys ---------------------------------------------------------------------
    def policy(self, task: Task) -> tuple[CachePolicy, bool]:
        """``(policy, explicit)``: the task's cache policy, and whether it asked for caching."""
        options = task.options
        memo = self._policies.get(id(options))
        if memo is not None and memo[0] is options:
            return memo[1], memo[2]
        policy, explicit = task_policy(options)
        if len(self._policies) > _MAX_REMEMBERED:
            self._policies.clear()
        self._policies[id(options)] = (options, policy, explicit)  # holding options keeps the id valid
        return policy, explicit

    def _persists(self, task: Task, explicit: bool) -> bool:
        chosen = task.options.persist_result
        return chosen if chosen is not None else explicit or self.persist_by_default

    def _key(self, task: Task, task_run: TaskRun, parameters: dict[str, Any], ctx: FlowRunContext, policy: CachePolicy) -> str | None:
        task_ctx = TaskRunContext(ctx, task, task_run, False)
        try:
            raw = policy.compute_key(task_ctx, parameters, ctx.flow_run.parameters)
        except UnhashableInputError as exc:
            hint = "" if self.policy(task)[1] else ", or persist_result=False to skip persisting it"
            self._warn(ctx, task_run, ("unhashable", task.name, exc.argument, exc.type_name),
                       f"Task {task.name!r} runs uncached: {exc}{hint}")
            return None
        except Exception as exc:
            self._warn(ctx, task_run, ("key", task.name, type(exc).__name__),
                       f"Task {task.name!r} runs uncached: computing its cache key with {policy!r} raised {exc!r}")
            return None
        if raw is None:
            return None
        # Namespaced by task name: two tasks never share an entry, and `cache clear --task` works.
        return hashlib.sha256(_KEY_PREFIX + f"{task.name}\0{raw}".encode("utf-8", "surrogatepass")).hexdigest()

    # --- hits --------------------------------------------------------------------------------------
    def _hit(self, key: str, task: Task, task_run: TaskRun, ctx: FlowRunContext) -> State | None:
        now = self.clock.now()
        item = self.writer.pending.get(key)
        if item is not None and (item.expire_at is None or item.expire_at > now):
            # In this process's memory (or a file this process wrote): ours.
            body: Any = item.data if item.file is None else item.file
        else:
            found = self.disk.read(key, now)
            if found is None:
                return None
            rowid, data = found
            if data.__class__ is StoredFile and data.writing:
                data = self._when_written(key, data, task, task_run, ctx)
                if data is None:
                    return None
            last = self._touched.get(rowid)
            if last is None or now - last > _TOUCH_EVERY:
                if len(self._touched) > _MAX_REMEMBERED:
                    self._touched.clear()
                self._touched[rowid] = now
                self.writer.touch(rowid, now)
            # A row's bytes are checked here, a file's as it is read (``files.load``).
            body = data if data.__class__ is StoredFile else self.signer.open(data, key) if isinstance(data, bytes) else None
        try:
            if body is None:
                raise BadTag(key)
            if body.__class__ is StoredFile:
                value = files.load(body.path, self.signer, key)
            elif body.__class__ is ResultFile:
                value = body.load()
            else:
                value = pickle.loads(body)
        except BadTag:  # planted, copied from another home, damaged, or from before tags: never unpickled
            # Warned once per task and flow run: after an upgrade every old entry is one of these.
            self._warn(ctx, task_run, ("untagged", task.name),
                       f"Cached result of task {task.name!r} could not be loaded: it is damaged or was not written by "
                       "nbflow for this home (its tag does not match), so it was not unpickled; dropped it, the "
                       "task runs again")
            self.writer.delete(key)
            return None
        except FileNotFoundError:  # its file was removed under us (eviction by another process, a user's rm)
            return None
        except Exception as exc:  # truncated, corrupted, or its class no longer exists
            self._warn(ctx, task_run, ("unloadable", task.name, key),
                       f"Cached result of task {task.name!r} could not be loaded ({type(exc).__name__}: {exc}); "
                       "dropped it, the task runs again")
            self.writer.delete(key)
            return None
        return states.Cached(data=value, timestamp=now)

    def _when_written(self, key: str, stored: StoredFile, task: Task, task_run: TaskRun, ctx: FlowRunContext) -> StoredFile | None:
        """Another process is writing ``key``'s file: wait for that file only, then read its row again.
        None (a miss) if it is still not written, or its writer died (the row is dropped)."""
        directory = self.disk.directory
        if not files.wait_written(directory, stored.filename, _WAIT_FOR_WRITER_SECONDS, self.clock.sleep, self.clock.monotonic):
            self._warn(ctx, task_run, ("writing", task.name, key),
                       f"Cached result of task {task.name!r} was still being written by another process after "
                       f"{_WAIT_FOR_WRITER_SECONDS:.0f} s; the task runs here too")
            return None
        found = self.disk.read(key, self.clock.now())
        data = None if found is None else found[1]
        if data.__class__ is not StoredFile:
            return None  # deleted, or replaced by a small value: look again next time
        if data.writing and data.filename == stored.filename:  # its writer is gone: the lock is free
            self._warn(ctx, task_run, ("unloadable", task.name, key),
                       f"Cached result of task {task.name!r} was never completely written (the process writing it "
                       "ended first); dropped it, the task runs again")
            self.writer.delete(key)
            files.discard(directory, stored.filename)
            return None
        return data if not data.writing else None

    def _lock_or_hit(self, key: str, task: Task, task_run: TaskRun, ctx: FlowRunContext, policy: CachePolicy) -> State | None:
        """Take the key's lock (waiting for whoever computes it), then look again."""
        if not LOCKS_SUPPORTED:
            self._warn(ctx, task_run, ("nolocks",), "Cache locks need fcntl (not on this platform); running unlocked")
            return None
        handle = self.locks.acquire(key, policy.lock_timeout, self.clock.sleep, self.clock.monotonic)
        if handle is None:
            self._warn(ctx, task_run, ("locktimeout", task.name),
                       f"Waited {policy.lock_timeout} s for another run computing {task.name!r}; running it here too")
            return None
        try:
            hit = self._hit(key, task, task_run, ctx)
        except BaseException:
            self.locks.release(key, handle)
            raise
        if hit is not None:
            self.locks.release(key, handle)
            return hit
        self._held[task_run.id] = (key, handle)  # released by store(), or by _on_event if it fails
        return None

    def _on_event(self, event: Any) -> None:
        if event.__class__ is not StateChanged or event.state.type not in _FINAL:
            return
        run = event.run
        if self._held:
            held = self._held.pop(run.id, None)  # a task that failed never reaches store()
            if held is not None:
                self.locks.release(*held)
        if run.__class__ is FlowRun and run.parent_flow_run_id is None and self.writer.pending:
            # When a top-level flow run returns, its results are on disk: a rerun from another
            # process (`nbflow flow-run rerun`) started right after finds them.
            self.writer.flush(_FLUSH_AT_END_SECONDS)

    # --- upkeep ------------------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued result is on disk (another process can then find it), large
        results written in the background included (a flow's end waits for their rows only)."""
        return self.writer.flush(timeout) and self.writer.files.drain(timeout)

    def _warn(self, ctx: FlowRunContext, task_run: TaskRun, what: tuple[Any, ...], message: str) -> None:
        """Log ``message`` as a WARNING of the task run, once per flow run for the same ``what``."""
        marker = (ctx.flow_run.id, *what)
        if marker in self._warned:
            return
        if len(self._warned) > _MAX_REMEMBERED:
            self._warned.clear()
        self._warned.add(marker)
        log(self.bus, task_run, logging.WARNING, message, self.clock.now())

    def _tell(self, ctx: FlowRunContext, task_run: TaskRun) -> None:
        while self.disk.notices:
            message = self.disk.notices.pop(0)
            self._warn(ctx, task_run, ("notice", message), message)

    def _warn_unavailable(self, ctx: FlowRunContext, task_run: TaskRun, exc: BaseException) -> None:
        self.disk.broken(exc)
        self._warn(ctx, task_run, ("unavailable", type(exc).__name__),
                   f"Result cache at {self.disk.directory} is unavailable ({type(exc).__name__}: {exc}); running without it")

    def _writer_failed(self, exc: BaseException) -> None:
        self.disk.broken(exc)
        marker = ("writer", type(exc).__name__)
        if marker not in self._warned:
            self._warned.add(marker)
            print(f"nbflow: could not write results to the cache at {self.disk.directory}: {exc!r}", file=sys.stderr)


def task_policy(options: Any) -> tuple[CachePolicy, bool]:
    """``(policy, explicit)`` from a task's options: its policy and key fn, else ``DEFAULT``."""
    policy = options.cache_policy
    if policy is not None and not isinstance(policy, CachePolicy):
        raise ArgumentTypeError(
            f"cache_policy must be a policy from nbflow.cache_policies (INPUTS, TASK_SOURCE, DEFAULT, ...), got {policy!r}"
        )
    if options.cache_key_fn is not None:
        by_fn = CacheKeyFnPolicy(cache_key_fn=options.cache_key_fn)
        policy = by_fn if policy is None else by_fn + policy
    if policy is not None:
        return policy, True
    # cache_expiration or refresh_cache alone also ask for caching, with the default key
    return DEFAULT, options.cache_expiration is not None or bool(options.refresh_cache)


def in_rerun(ctx: Any) -> bool:
    """Whether ``ctx`` runs inside ``flow.rerun()`` (its flow run, or a parent's, reruns another)."""
    while ctx is not None:
        if ctx.__class__ is FlowRunContext:
            if ctx.flow_run.rerun_of is not None:
                return True
            ctx = ctx.parent
        elif ctx.__class__ is TaskRunContext:
            ctx = ctx.flow_context
        else:
            return False
    return False


def _seconds(expiration: Any) -> float:
    return expiration.total_seconds() if hasattr(expiration, "total_seconds") else float(expiration)


def _unpicklable_message(task: Task, task_run: TaskRun, value: Any, exc: BaseException) -> str:
    tp = type(value)
    name = tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"
    return (
        f"Result of task {task.name!r} is not persisted: a {name} cannot be pickled ({exc}). "
        "The run is Completed, but a rerun will compute it again; set persist_result=False to silence this"
    )
