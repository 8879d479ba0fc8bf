"""What nbflow relies on under diskcache's public API is still there (``nbflow/_services/cache/disk.py`` and
``forksafe.py``, the only modules that reach under it): a diskcache upgrade that changes any of it
fails here, by name, rather than as a corrupted or silently empty cache."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import diskcache
import diskcache.core

from nbflow._services.cache import disk

# Every column disk.py's SQL names (reads, upserts, access-time touches, listing), in diskcache's order.
COLUMNS = ["rowid", "key", "raw", "store_time", "expire_time", "access_time", "access_count", "tag", "size", "mode",
           "filename", "value"]


def _open(tmp_path: Path) -> diskcache.Cache:
    """A plain diskcache.Cache with the settings disk.py opens its cache with."""
    return diskcache.Cache(str(tmp_path / "cache"), eviction_policy="least-recently-used", tag_index=True, statistics=False)


def test_the_cache_table_has_exactly_the_columns_disk_py_writes(tmp_path: Path) -> None:
    cache = _open(tmp_path)
    cache.set("k", b"v")
    cache.close()
    with sqlite3.connect(tmp_path / "cache" / "cache.db") as con:
        columns = [row[1] for row in con.execute("PRAGMA table_info(Cache)")]
        unique = [name for _, name, is_unique, *_ in con.execute("PRAGMA index_list(Cache)") if is_unique]
        indexed = {name: [row[2] for row in con.execute(f"PRAGMA index_info({name})")] for name in unique}
        triggers = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    con.close()
    assert columns == COLUMNS
    # the upserts' ON CONFLICT (key, raw) needs this very unique index
    assert ["key", "raw"] in indexed.values(), indexed
    # rows written by SQL of our own keep diskcache's count and volume right only through its triggers
    assert {"Settings_count_insert", "Settings_count_delete", "Settings_size_insert", "Settings_size_update",
            "Settings_size_delete"} <= triggers, triggers


def test_the_mode_constants_are_diskcaches() -> None:
    assert disk.MODE_RAW == diskcache.core.MODE_RAW
    assert disk.MODE_BINARY == diskcache.core.MODE_BINARY
    # nbflow's own mode for a file still being written must mean nothing to diskcache (it reads as a miss)
    modes = {getattr(diskcache.core, name) for name in dir(diskcache.core) if name.startswith("MODE_")}
    assert modes == {0, 1, 2, 3, 4}
    assert disk.MODE_WRITING not in modes


def test_the_private_attributes_disk_and_forksafe_use_are_there(tmp_path: Path) -> None:
    cache = _open(tmp_path)
    try:
        assert isinstance(diskcache.Cache.__dict__["_con"], property)  # forksafe overrides it and calls its fget
        con = cache._con
        assert isinstance(con, sqlite3.Connection)
        assert cache._local.con is con and cache._local.pid == os.getpid()  # forksafe reads both
        assert cache._sql("SELECT count(*) FROM Cache").fetchone() == (0,)
        assert isinstance(cache._disk, diskcache.Disk) and callable(cache._disk.remove)
    finally:
        cache.close()
