"""The home folder is private: folders 0700, files 0600, and a folder others can write is refused.

nbflow loads pickles from ``$NBFLOW_HOME/cache`` and imports the modules a run recorded for reruns,
so whoever can write the home can run code as the user. As ssh's ``StrictModes`` does, a home (or
``cache/``) that another user owns or that group or others can write is refused, never repaired: the
user decides (``chmod 700``, or another ``NBFLOW_HOME``). Modes are set per file with ``chmod`` and
``os.open``; the process umask is never changed (other threads create files too).
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from nbflow._core.threads import renew_after_fork
from nbflow.exceptions import ConfigurationError

__all__ = ["check_private_dir", "make_private_dir", "tighten_dir", "create_private_file", "make_private",
           "open_private"]

_OTHERS = stat.S_IRWXG | stat.S_IRWXO
_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH
_create_lock = threading.Lock()
renew_after_fork(globals(), "_create_lock")  # a fork while another thread holds it


def _owners() -> tuple[int, ...]:
    euid = os.geteuid() if hasattr(os, "geteuid") else -1
    return (euid, 0)  # ourselves, or root (as ssh allows): no one else can replace what is in it


def check_private_dir(path: Path, what: str = "NBFLOW_HOME") -> None:
    """Refuse ``path`` (if it is a folder) when another user owns it or group or others can write it.

    One ``stat``: cheap enough for every time a home or cache folder is opened.
    """
    if not hasattr(os, "geteuid"):  # Windows: no POSIX modes to check
        return
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise ConfigurationError(f"Cannot read {path}: {exc.strerror or exc}. Set NBFLOW_HOME to a folder of yours.") from None
    if not stat.S_ISDIR(st.st_mode):
        return  # not a folder: the caller's own check says so
    fix = f"`chmod 700 {path}` (if it is yours and no one else should use it), or set NBFLOW_HOME to another folder"
    if st.st_uid not in _owners():
        raise ConfigurationError(
            f"{what} {path} is owned by another user (uid {st.st_uid}), who could plant code nbflow would run: "
            "nbflow refuses it. Use a folder of your own: set another NBFLOW_HOME."
        )
    if st.st_mode & _WRITABLE_BY_OTHERS:
        who = "its group and others" if st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IWOTH else (
            "its group" if st.st_mode & stat.S_IWGRP else "others")
        raise ConfigurationError(
            f"{what} {path} is writable by {who} (mode {stat.S_IMODE(st.st_mode):o}), who could plant code nbflow "
            f"would run: nbflow refuses it. Fix: {fix}."
        )


def make_private_dir(path: Path) -> None:
    """Create ``path`` if missing; each folder we create (parents too) is 0700 whatever the umask."""
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # another process made it first: its mode is its maker's
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


def tighten_dir(path: Path, *, contents: bool = False) -> bool:
    """``chmod go-rwx`` a folder of ours that group or others can read (an older nbflow made it 0755);
    with ``contents``, every folder and file under it too. True if it had to. Never loosens a mode;
    a folder others can *write* is refused by ``check_private_dir`` before this is called."""
    if not hasattr(os, "geteuid"):
        return False
    try:
        st = os.stat(path)
        if not (st.st_mode & _OTHERS and st.st_uid == os.geteuid() and stat.S_ISDIR(st.st_mode)):
            return False
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~_OTHERS)
    except OSError:
        return False
    if contents:
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                try:
                    full = os.path.join(root, name)
                    mode = os.lstat(full).st_mode
                    if mode & _OTHERS and not stat.S_ISLNK(mode):
                        os.chmod(full, stat.S_IMODE(mode) & ~_OTHERS)
                except OSError:
                    continue
    return True


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty and 0600 if it does not exist yet; True if we created it.

    SQLite gives a database's ``-wal`` and ``-shm`` files the mode of the database file, so creating
    the database 0600 before SQLite first opens it makes all three private. An existing file is never
    opened here: closing any descriptor of a file drops the process's POSIX locks on it, SQLite's
    included. The lock keeps another thread from opening the file we just created before we close it.
    """
    with _create_lock:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        except FileExistsError:
            return False
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)  # the umask may have taken bits off 0600; never adds any
        finally:
            os.close(fd)
        return True


def make_private(*paths: Path) -> None:
    """``chmod 600`` files of ours that group or others can read or write (made by an older nbflow)."""
    if not hasattr(os, "geteuid"):
        return
    for path in paths:
        try:
            st = os.stat(path)
            if st.st_mode & _OTHERS and st.st_uid == os.geteuid() and stat.S_ISREG(st.st_mode):
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~_OTHERS)
        except OSError:
            continue  # gone, or not ours to change: the folder's own mode still keeps others out


def open_private(path: str | os.PathLike[str]) -> int:
    """A new file opened for writing, 0600 from the start; fails if it exists. Returns the descriptor."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
