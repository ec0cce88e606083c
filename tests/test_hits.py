"""The plain-file store a direct-mode hit reads (llmcc.cache.hits) and how the local cache
routes to it: entries survive a round trip, damage is reported and never unmarshalled,
entries of another format read as misses, the least recently used go first, and a hit opens
no SQLite."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from conftest import log_outcomes, run

from llmcc.cache import CacheError
from llmcc.cache.disk import DiskCache
from llmcc.cache.hits import FANOUT, HEADER, HitStore

ENTRY = {"entries": [{"headers": [("/usr/include/stdio.h", "ab" * 20)], "ir_key": "cd" * 20,
                      "stderr": b"", "depfile": None,
                      "decision": {"object": b"\x7fELF" + bytes(range(256)), "passes": None,
                                   "baseline_size": 10, "size": 10}}]}


def _key(first: int, n: int) -> str:
    return f"{first:02x}{n:038x}"


def test_an_entry_comes_back_as_it_was_stored(tmp_path):
    store = HitStore(str(tmp_path), 1 << 30)
    store.put("direct", _key(1, 1), ENTRY)
    assert store.get("direct", _key(1, 1)) == ENTRY
    assert store.get("tools", _key(1, 1)) is None  # namespaces apart
    assert store.get("direct", _key(1, 2)) is None


def test_a_damaged_entry_is_reported_and_the_next_write_replaces_it(tmp_path):
    store = HitStore(str(tmp_path), 1 << 30)
    store.put("direct", _key(1, 1), ENTRY)
    [path] = Path(tmp_path).rglob("direct-*")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="damaged"):
        store.get("direct", _key(1, 1))
    path.write_bytes(bytes(data[:len(HEADER) + 5]))  # truncated
    with pytest.raises(CacheError, match="damaged"):
        store.get("direct", _key(1, 1))
    store.put("direct", _key(1, 1), ENTRY)
    assert store.get("direct", _key(1, 1)) == ENTRY


def test_an_entry_of_another_format_or_python_reads_as_a_miss(tmp_path):
    store = HitStore(str(tmp_path), 1 << 30)
    store.put("direct", _key(1, 1), ENTRY)
    [path] = Path(tmp_path).rglob("direct-*")
    path.write_bytes(path.read_bytes().replace(HEADER, b"llmcc hits 0 py3.9\n", 1))
    assert store.get("direct", _key(1, 1)) is None


def test_a_full_subdirectory_loses_its_least_recently_used_entries(tmp_path):
    value = {"blob": b"x" * 1000}
    probe = HitStore(str(tmp_path / "probe"), 1 << 30)
    probe.put("direct", _key(7, 0), value)
    entry_size = os.path.getsize(probe._path("direct", _key(7, 0)))
    store = HitStore(str(tmp_path), FANOUT * 10 * entry_size)  # ten entries a subdirectory
    for n in range(10):
        store.put("direct", _key(7, n), value)
        old = time.time() - 1000 + n
        os.utime(store._path("direct", _key(7, n)), (old, old))
    assert store.get("direct", _key(7, 0)) == value  # used now: the most recent
    for n in range(10, 14):
        store.put("direct", _key(7, n), value)
        store.put("direct", _key(8, n), value)  # another subdirectory, trimmed on its own
    kept = {n for n in range(14) if store.get("direct", _key(7, n)) is not None}
    assert 0 in kept and {10, 11, 12, 13} <= kept
    assert len(kept) <= 10 and 1 not in kept
    assert all(store.get("direct", _key(8, n)) == value for n in range(10, 14))


def test_clear_and_volume_cover_both_stores(tmp_path):
    cache = DiskCache(str(tmp_path / "cache"), 1 << 30)
    cache.put("direct", _key(1, 1), ENTRY)
    cache.put("ir", _key(1, 1), {"object": b"x" * 100})
    assert cache.volume() >= len(ENTRY["entries"][0]["decision"]["object"]) + 100
    assert cache.clear() == 2
    assert cache.get("direct", _key(1, 1)) is None and cache.get("ir", _key(1, 1)) is None
    cache.close()


def test_the_first_failure_to_write_is_the_one_reported(tmp_path):
    """A cache that cannot be written says so in the same words to every later write, so a
    compile warns once however many entries it tried to store."""
    directory = tmp_path / "cache"
    directory.write_text("a file where the cache directory should be")
    cache = DiskCache(str(directory), 1 << 30)
    errors = []
    for namespace in ("tools", "ir", "direct", "breaker"):
        with pytest.raises(CacheError) as caught:
            cache.put(namespace, _key(1, 1), {"x": 1})
        errors.append(str(caught.value))
    assert len(set(errors)) == 1
    with pytest.raises(CacheError):
        cache.get("ir", _key(1, 1))
    assert cache.get("direct", _key(1, 1)) is None  # a file of its own: none there


def test_a_direct_hit_opens_no_database(tmp_path, env, llmcc):
    """Run llmcc's entry point as its console script does: by the end of a direct hit it has
    imported neither diskcache nor SQLite nor pickle, nor anything that runs clang, nor json,
    with LLMCC_LOG set or not (an editable install's import hook loads some modules before
    llmcc runs: not llmcc's doing)."""
    (tmp_path / "hit.c").write_text("#include <stdio.h>\nint main(void) { puts(\"hi\"); }\n")
    args = ["-Oz", "-MD", "-c", "hit.c", "-o", "hit.o"]
    environ = {k: v for k, v in env.items() if k != "LLMCC_LOG"}
    assert run([llmcc, *args], cwd=tmp_path, env=environ).returncode == 0
    # hashlib loads OpenSSL, the signal module enum, collections a namedtuple's parts:
    # milliseconds each, on every hit
    heavy = ("diskcache", "sqlite3", "pickle", "subprocess", "tempfile", "json", "hashlib",
             "enum", "signal", "collections")
    code = ("import sys\n"
            "before = set(sys.modules)\n"
            f"sys.argv = ['llmcc', *{args!r}]\n"
            "from llmcc.launch import cc\n"
            "try:\n"
            "    cc()\n"
            "except SystemExit as done:\n"
            "    assert not done.code, done.code\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules and m not in before))\n")
    for logged in (environ, env):
        done = run([sys.executable, "-c", code], cwd=tmp_path, env=logged)
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode().strip() == "[]"
    assert log_outcomes(env) == ["direct_hit"]
