"""Large results as files of their own: streamed from the object's memory to a locked temp file
and renamed, so no second in-memory copy is made and no half-written file ever has a result's name.

A file is tagged like every cache entry (``signing.py``) and is read whole into memory, its tag
checked, before anything in it is unpickled. So that neither writing nor loading copies a large
result, a numpy array's data (any pickle protocol 5 buffer) is kept out of the pickle::

    header: b"nbfile:1", kind, piece count, each piece's length
    pieces: the pickle (out-of-band buffers left out) or a bytes result itself, then each buffer,
            each piece at a multiple of 64 bytes (what numpy wants of an array's memory)
    b"nbftag:2" + HMAC-SHA256 of everything before it

Writing hashes each piece as it goes from the result's own memory to the file. Loading reads the
pieces into one bytearray while hashing, checks the tag, then unpickles with the buffers as views
of that bytearray: the loaded array's memory IS the read buffer. A bytes result is read into the
bytes object returned (one ``read``), never unpickled.

While a file is written its writer holds an exclusive ``flock`` on it (temp name, then the final one
until its row says it is complete): a reader in another process that finds the row "writing" waits
for that lock only, and a writer that died released it, so its row is seen to be dead. The cache
database rows are ``disk.py``'s business; this module only knows files.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbflow._core.home import make_private_dir, open_private
from nbflow._core.threads import start_thread, starting
from nbflow._services.cache.locks import same_file as _same_file
from nbflow._services.cache.signing import TRAILER_SIZE, BadTag, Signer

try:
    import fcntl
except ImportError:  # Windows: no flock; temp + rename still keeps half files nameless
    fcntl = None  # type: ignore[assignment]

__all__ = ["MIN_FILE_SIZE", "Parts", "ResultFile", "FileWriter", "split", "load", "wait_written", "discard", "sweep"]

_CHUNK = 4 * 2**20  # bytes hashed then written (or read then hashed) at a time: still in the CPU's cache
MIN_FILE_SIZE = 2**15  # diskcache's ``disk_min_file_size`` (we keep its default): smaller stays in SQLite
FILE_MAGIC = b"nbfile:1"  # bump with the layout; a file of another layout is a miss
PICKLE, RAW = b"p"[0], b"b"[0]  # the kinds: a pickle and its buffers, or a bytes result as it is
_HEAD = struct.Struct("<8sB3xI")  # magic, kind, piece count; then a u64 length per piece
_ALIGN = 64


class Parts:
    """A result on its way to a file, as the pieces written: ``[pickle, *buffers]`` (``PICKLE``:
    the buffers are the result's own memory) or ``[the bytes result]`` (``RAW``)."""

    __slots__ = ("frozen", "kind", "pieces", "size")

    def __init__(self, kind: int, pieces: list[Any]) -> None:
        self.kind, self.pieces = kind, pieces
        self.size = sum(memoryview(piece).nbytes for piece in pieces)
        # Our own pickle bytes and a bytes result cannot change; a buffer (a numpy array's memory)
        # can, so it is written before the task's caller can mutate it: never in the background.
        self.frozen = kind == RAW or len(pieces) == 1


class _HasBuffers(Exception):
    """Raised by ``_no_buffers``: the value offers pickle protocol 5 buffers (a numpy array)."""


def _no_buffers(buffer: Any) -> None:
    raise _HasBuffers  # one shared callback: the common case (no buffers) allocates nothing for it


def split(value: Any, min_file_size: int = MIN_FILE_SIZE) -> bytes | Parts:
    """The pickle of ``value`` (bytes), or ``Parts`` when it is ``min_file_size`` or more.

    Numpy arrays (and anything else offering pickle protocol 5 buffers) are measured by their
    buffers, never copied into a pickle here. A ``bytes`` result is not pickled here at all.
    """
    if value.__class__ is bytes and len(value) >= min_file_size:
        return Parts(RAW, [value])
    try:
        data = pickle.dumps(value, protocol=5, buffer_callback=_no_buffers)
    except _HasBuffers:
        nbytes = getattr(value, "nbytes", None)  # a numpy array says how large it is
        if nbytes.__class__ is int and nbytes < min_file_size // 2:
            return pickle.dumps(value, protocol=5)
        buffers: list[Any] = []  # kept out of the pickle: written from the array's own memory
        data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        parts = Parts(PICKLE, [data, *buffers])
        if parts.size >= min_file_size:
            return parts
        return pickle.dumps(value, protocol=5)  # small arrays: one ordinary pickle in the database
    if len(data) >= min_file_size:
        return Parts(PICKLE, [data])
    return data


class ResultFile:
    """One result file: its name in the cache folder, and, while it is written, its locked temp file."""

    __slots__ = ("directory", "fd", "filename", "key", "parts", "signer", "size", "__weakref__")

    def __init__(self, directory: Path, parts: Parts, signer: Signer, key: str) -> None:
        self.directory = directory
        self.signer = signer
        self.key = key
        self.parts: Parts | None = parts
        self.size = parts.size
        self.fd: int | None = None
        self.filename = ""
        self._create()

    @property
    def path(self) -> str:
        return str(self.directory / self.filename)

    def load(self) -> Any:
        """The result: from what is still held for writing (this process's own, it cannot have
        changed), else from the file (its tag checked)."""
        parts = self.parts  # once: the file thread drops it when the file is complete
        if parts is None or not parts.frozen:
            return load(self.path, self.signer, self.key)
        return parts.pieces[0] if parts.kind == RAW else pickle.loads(parts.pieces[0])

    def _create(self) -> None:
        tmp_dir = _tmp_dir(self.directory)
        while True:
            hex_name = os.urandom(16).hex()
            # diskcache's own layout (two levels of folders), so its culling removes our files too
            self.filename = os.path.join(hex_name[:2], hex_name[2:4], hex_name[4:] + ".val")
            make_private_dir(Path(tmp_dir))
            tmp = str(tmp_dir / (hex_name + ".tmp"))
            fd = open_private(tmp)
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not _same_file(fd, tmp):  # swept as dead between create and lock: a new name
                    os.close(fd)
                    continue
            self.fd = fd
            _open_files.add(self)
            return

    def write(self) -> None:
        """Write the pieces and their tag, and rename the file to its final name (still locked;
        ``close`` unlocks)."""
        parts, fd = self.parts, self.fd
        assert parts is not None and fd is not None
        hasher = self.signer.hasher(self.key)
        lengths = [memoryview(piece).nbytes for piece in parts.pieces]
        _hashed_write(fd, hasher, _HEAD.pack(FILE_MAGIC, parts.kind, len(lengths)) + struct.pack(f"<{len(lengths)}Q", *lengths))
        at = 0
        for piece, offset, length in zip(parts.pieces, _offsets(lengths), lengths):
            if offset > at:
                _hashed_write(fd, hasher, bytes(offset - at))
            _hashed_write(fd, hasher, piece)
            at = offset + length
        _write_all(fd, Signer.trailer(hasher))
        # No fsync: the rename is atomic for every process on this machine, which is what a killed
        # process needs; after a power loss a damaged file fails to load and is recomputed.
        final = self.path
        make_private_dir(Path(os.path.dirname(final)))  # each level 0700, whatever the umask
        os.replace(_tmp_path(self.directory, self.filename), final)
        self.size = os.fstat(fd).st_size
        self.parts = None  # the result's memory is the caller's again

    def close(self) -> None:
        fd, self.fd = self.fd, None
        _open_files.discard(self)
        if fd is not None:
            os.close(fd)  # drops the flock: readers waiting for this file go on

    def abandon(self) -> None:
        """The write failed or was dropped: remove whatever was written, under either name."""
        for path in (_tmp_path(self.directory, self.filename), self.path):
            try:
                os.unlink(path)
            except OSError:
                pass
        self.parts = None
        self.close()


# Result files being written by this process. A forked child inherits their descriptors, and with
# them the flock that tells other processes "still being written": the child closes its copies at
# once (the parent's lock stays), or readers would wait for the child's exit, and a parent killed
# mid-write would not look dead.
_open_files: weakref.WeakSet[ResultFile] = weakref.WeakSet()


def _close_inherited() -> None:
    for file in list(_open_files):
        fd, file.fd = file.fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    _open_files.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited)


def _offsets(lengths: list[int] | tuple[int, ...]) -> list[int]:
    """Where each piece starts, after the header: at the next multiple of ``_ALIGN``."""
    offsets, end = [], 0
    for length in lengths:
        start = -(-end // _ALIGN) * _ALIGN
        offsets.append(start)
        end = start + length
    return offsets


def _bytes_of(buffer: Any) -> memoryview:
    # raw(): the bytes of a C- or Fortran-ordered buffer, without a copy
    return buffer.raw() if buffer.__class__ is pickle.PickleBuffer else memoryview(buffer).cast("B")


def _hashed_write(fd: int, hasher: Any, buffer: Any) -> None:
    view = _bytes_of(buffer)
    for start in range(0, len(view), _CHUNK):
        chunk = view[start : start + _CHUNK]
        hasher.update(chunk)
        _write_all(fd, chunk)


def _write_all(fd: int, buffer: Any) -> None:
    view = _bytes_of(buffer)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _tmp_dir(directory: Path) -> Path:
    # Beside the cache folder, not in it: diskcache's ``check()`` reports any file it has no row for.
    return directory.with_name(directory.name + "-writing")


def _tmp_path(directory: Path, filename: str) -> str:
    hex_name = filename.replace(os.sep, "").replace("/", "")[: -len(".val")]
    return str(_tmp_dir(directory) / (hex_name + ".tmp"))


# --- reading -------------------------------------------------------------------------------------

def load(path: str, signer: Signer, key: str) -> Any:
    """The result in the file at ``path``, unpickled only once its tag is checked.

    Raises ``BadTag`` if the file is not one this home's nbflow wrote whole (planted, copied from
    another home, truncated, damaged), ``FileNotFoundError`` if it is gone, and what unpickling
    raises if its classes changed since.
    """
    with open(path, "rb") as f:
        hasher = signer.hasher(key)
        kind, lengths, offsets = _read_header(f, hasher, path)
        total = offsets[-1] + lengths[-1]
        if kind == RAW:
            body: Any = f.read(total)  # the bytes result itself, read once
            hasher.update(body)
        else:
            body = _read_into_one_buffer(f, hasher, total, path)
        trailer = f.read(TRAILER_SIZE + 1)
    if len(body) != total or not Signer.verify(hasher, trailer):
        raise BadTag(path)
    if kind == RAW:
        return body
    view = memoryview(body)
    return pickle.loads(view[: lengths[0]], buffers=[view[o : o + n] for o, n in zip(offsets[1:], lengths[1:])])


def _read_header(f: Any, hasher: Any, path: str) -> tuple[int, tuple[int, ...], list[int]]:
    """``(kind, lengths, offsets)`` of the pieces. Not trusted until the tag is checked: it only
    bounds what is read, and must agree with the file's size."""
    size = os.fstat(f.fileno()).st_size
    head = f.read(_HEAD.size)
    if len(head) < _HEAD.size:
        raise BadTag(path)
    magic, kind, count = _HEAD.unpack(head)
    if magic != FILE_MAGIC or kind not in (PICKLE, RAW) or not 0 < count <= size // 8 or (kind == RAW and count != 1):
        raise BadTag(path)
    table = f.read(8 * count)
    if len(table) != 8 * count:
        raise BadTag(path)
    lengths = struct.unpack(f"<{count}Q", table)
    offsets = _offsets(lengths)
    if _HEAD.size + len(table) + offsets[-1] + lengths[-1] + TRAILER_SIZE != size:
        raise BadTag(path)
    hasher.update(head)
    hasher.update(table)
    return kind, lengths, offsets


def _read_into_one_buffer(f: Any, hasher: Any, total: int, path: str) -> bytearray:
    """The pieces, read into the one bytearray the loaded arrays will use, hashed as they come."""
    body = bytearray(total)
    view = memoryview(body)
    at = 0
    while at < total:
        read = f.readinto(view[at : at + _CHUNK])
        if not read:
            raise BadTag(path)  # shorter than it said: changed while read
        hasher.update(view[at : at + read])
        at += read
    return body


def wait_written(directory: Path, filename: str, timeout: float, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> bool:
    """Wait until no process holds the write lock of ``filename``; False if ``timeout`` ran out."""
    if fcntl is None:
        return True
    deadline = monotonic() + timeout
    for path in (_tmp_path(directory, filename), str(directory / filename)):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # renamed already (look at the final name), or gone
        try:
            delay = 0.001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    if monotonic() >= deadline:
                        return False
                    sleep(delay)
                    delay = min(delay * 2, 0.05)
        finally:
            os.close(fd)
    return True


def discard(directory: Path, filename: str) -> None:
    """Remove the temp file a dead writer left for ``filename`` (its final name may not exist)."""
    try:
        os.unlink(_tmp_path(directory, filename))
    except OSError:
        pass


def sweep(directory: Path) -> int:
    """Remove temp files whose writer is gone (killed mid-write); returns how many."""
    if fcntl is None:
        return 0
    removed = 0
    try:
        names = os.listdir(_tmp_dir(directory))
    except OSError:
        return 0
    for name in names:
        path = str(_tmp_dir(directory) / name)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live writer
        try:
            os.unlink(path)
            removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


# --- the background ------------------------------------------------------------------------------

MAX_BACKGROUND_BYTES = 1 << 30
"""Bytes of results held for background writing; a result that does not fit is written at once."""


class FileWriter:
    """Writes result files on a thread of its own, so a large write never holds up the batches of
    small ones (or a flow's end, which waits for those)."""

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self._on_error = on_error
        self._reset()

    def _reset(self) -> None:
        self._jobs: collections.deque[tuple[ResultFile, Callable[[ResultFile], None]]] = collections.deque()
        self._cond = threading.Condition()
        self._bytes = 0
        self._busy = 0  # jobs submitted and not finished
        self._thread: threading.Thread | None = None

    def reserve(self, size: int) -> bool:
        """Make room for ``size`` bytes; False when that would pass ``MAX_BACKGROUND_BYTES`` (a lone
        result of any size fits, so one large result is never written on the task's thread)."""
        with self._cond:
            if self._bytes and self._bytes + size > MAX_BACKGROUND_BYTES:
                return False
            self._bytes += size
            return True

    def release(self, size: int) -> None:
        with self._cond:
            self._bytes -= size

    def submit(self, file: ResultFile, done: Callable[[ResultFile], None]) -> None:
        """Write ``file`` in the background, then call ``done(file)`` (which records it complete)."""
        with self._cond:
            self._jobs.append((file, done))
            self._busy += 1
            if self._thread is None:
                with starting():  # started and recorded together (see nbflow._core.threads)
                    self._thread = threading.Thread(target=self._loop, name="nbflow-result-files", daemon=True)
                    start_thread(self._thread)
            self._cond.notify_all()

    def drain(self, timeout: float | None) -> bool:
        """Wait until every submitted file is written; False if ``timeout`` ran out."""
        with self._cond:
            return self._cond.wait_for(lambda: self._busy == 0, timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._jobs:
                    self._thread = None
                    return
                file, done = self._jobs.popleft()
            size = file.size
            try:
                file.write()
                done(file)
            except Exception as exc:  # never let the thread die: report, drop this file, go on
                file.abandon()
                self._on_error(exc)
            finally:
                file.close()
                with self._cond:
                    self._bytes -= size
                    self._busy -= 1
                    self._cond.notify_all()
