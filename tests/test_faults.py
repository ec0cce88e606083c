"""Faults around a compile: broken data, a missing or foreign clang, a read-only, full or
corrupt cache, entries from an older llmcc, two parallel builds on one cache, and Ctrl-C or
SIGTERM in the middle of a compile.

Whatever goes wrong, a compile ends as plain clang's would: the same exit code, an object that
is plain clang's or a verified smaller one, the same depfile; at most one llmcc warning; no
partial or temporary file beside the output; and cache entries that were good stay good.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    SIZE_C,
    SIZE_H,
    compile_outputs,
    log_events,
    log_outcomes,
    restore_default_signals,
    run,
    script,
)

from llmcc.cache import hits
from llmcc.cache.disk import FORMAT
from llmcc.objfile import read_object
from llmcc.toolchain import opt_beside

QUIET_C = "int quiet(int x) { return x * 2 + 1; }\n"

# Many small functions: an object of ~18 KB, several pages on a tiny filesystem.
BIG_C = "\n".join(
    f"int f{i}(int *p, int n) {{ int s = {i}; for (int j = 0; j < n; j++) "
    f"s += p[j] * {i} ^ (s >> 3); return s; }}" for i in range(150)) + "\n"

# A decision stored in its own file by diskcache (values above 32 KB are not kept in SQLite).
HUGE_C = "\n".join(
    f"int g{i}(int *p, int n) {{ int s = {i}; for (int j = 0; j < n; j++) "
    f"s += p[j] * {i} ^ (s >> 3); return s; }}" for i in range(400)) + "\n"

ARGS = ["-Oz", "-Wall", "-MD", "-c", "size.c", "-o", "out/size.o"]
OUTPUTS = ["out/size.o", "out/size.d"]


@pytest.fixture
def tree(tmp_path, env) -> Path:
    root = tmp_path / "src"
    (root / "out").mkdir(parents=True)
    for name, text in {"size.h": SIZE_H, "size.c": SIZE_C, "quiet.c": QUIET_C,
                       "big.c": BIG_C, "huge.c": HUGE_C}.items():
        (root / name).write_text(text)
    # llmcc's own temporary files go here, so the tests can see that none are left behind
    (tmp_path / "tmp").mkdir()
    env["TMPDIR"] = str(tmp_path / "tmp")
    return root


def _ours(stderr: bytes) -> list[str]:
    """The lines llmcc itself printed."""
    return [line for line in stderr.decode(errors="replace").splitlines(keepends=True)
            if line.startswith("llmcc:") or "Traceback" in line]


def _leftovers(*directories: Path) -> list[str]:
    """Temporary files of llmcc's (or anything at all in a private TMPDIR)."""
    found = []
    for directory in directories:
        for path in directory.rglob("*"):
            if path.name.endswith(".llmcc-tmp") or directory.name == "tmp":
                found.append(str(path))
    return found


def _build(program: str, args: list[str], cwd: Path, env: dict[str, str],
           outputs: list[str] = OUTPUTS) -> tuple[int, bytes, dict[str, bytes | None]]:
    return compile_outputs(program, args, cwd, env, outputs)


def _assert_like_plain(plain: tuple, tuned: tuple, tree: Path, warning: str | None) -> None:
    """`tuned` (llmcc's _build) ends as `plain` (clang's) would, with at most one warning."""
    rc, expected, plain_files = plain
    actual_rc, actual, tuned_files = tuned
    assert actual_rc == rc
    ours = _ours(actual)
    if warning is None:
        assert ours == []
    else:
        assert len(ours) == 1 and ours[0].startswith("llmcc: warning: ") and warning in ours[0], \
            actual.decode(errors="replace")
    assert actual.decode().replace("".join(ours), "", 1) == expected.decode()
    assert {n for n, b in tuned_files.items() if b is not None} == \
        {n for n, b in plain_files.items() if b is not None}
    for name, blob in plain_files.items():
        if blob is None:
            continue
        if name.endswith(".o") and tuned_files[name] != blob:
            plain_info, tuned_info = read_object(blob), read_object(tuned_files[name])
            assert tuned_info.size < plain_info.size
            assert tuned_info.defined == plain_info.defined
            assert tuned_info.undefined <= plain_info.undefined
        else:
            assert tuned_files[name] == blob, name
    assert _leftovers(tree, tree.parent / "tmp") == []


# --- the advisor's data file ---------------------------------------------------------------------

@pytest.mark.parametrize("damage, warning", [
    (None, "No such file or directory"),
    (b"\x00\x17not json at all", "is corrupt"),
    (b'{"passes": []}', "is corrupt"),
    (b'{"lists": []}', "holds no pass lists"),
    (b'{"lists": [{"passes": "instcombine internalize"}]}', "is corrupt"),
    (b'{"lists": [{"passes": "inline $(touch pwned) -load=pwned.so"}]}', "is corrupt"),
], ids=["missing", "not-json", "no-lists-key", "empty", "unknown-pass", "hostile"])
def test_damaged_popular_data_warns_once_and_keeps_the_cache(tree, package_copy, clang, llmcc,
                                                             env, damage, warning):
    data = package_copy / "advisor" / "popular.json"
    good = data.read_bytes()
    env["LLMCC_ADVISOR"] = "popular"
    first = _build(llmcc, ARGS, tree, env)
    assert first[0] == 0 and log_outcomes(env) == ["miss"]
    plain = _build(clang, ARGS, tree, env)
    if damage is None:
        data.unlink()
    else:
        data.write_bytes(damage)
    damaged = _build(llmcc, ARGS, tree, env)
    _assert_like_plain(plain, damaged, tree, warning)
    assert str(data) in _ours(damaged[1])[0]  # the copy was the one in use
    assert damaged[2] == plain[2]  # plain clang compiled it
    data.write_bytes(good)
    again = _build(llmcc, ARGS, tree, env)
    assert again == first  # the decision made before the damage is still there
    assert log_outcomes(env) == ["miss", "fallback", "direct_hit"]
    assert not (tree / "pwned").exists()  # nothing from the data file reached a shell


def test_a_bug_in_llmcc_warns_once_and_plain_clang_compiles(tree, package_copy, clang, llmcc,
                                                            env):
    """An exception llmcc does not expect (here planted in the choice of the smallest object)
    hands the compile to clang: its exact outputs, one warning, the traceback in the log, and
    nothing cached, so the repaired llmcc decides the TU afresh."""
    optimize = package_copy / "optimize.py"
    good = optimize.read_text()
    optimize.write_text(good + "\n\ndef choose(baseline, candidates):\n"
                        "    raise ZeroDivisionError('planted')\n")
    plain = _build(clang, ARGS, tree, env)
    for _ in range(2):
        _assert_like_plain(plain, _build(llmcc, ARGS, tree, env), tree,
                           "internal error (ZeroDivisionError: planted), please report it; "
                           "compiling with plain clang")
    event = log_events(env)[-1]
    assert event["outcome"] == "fallback" and "choose" in event["traceback"]
    optimize.write_text(good)
    _assert_like_plain(plain, _build(llmcc, ARGS, tree, env), tree, None)
    assert log_outcomes(env) == ["fallback", "fallback", "miss"]


# --- the real clang ------------------------------------------------------------------------------

@pytest.mark.parametrize("setting", ["/nonexistent/clang-19", "clang-99",
                                     "clang-19; touch pwned"])
@pytest.mark.parametrize("args", [ARGS, ["--version"]], ids=["compile", "passthrough"])
def test_missing_clang_fails_like_a_missing_compiler(tree, llmcc, env, setting, args):
    env["LLMCC_CLANG"] = setting
    done = run([llmcc, *args], cwd=tree, env=env)
    assert done.returncode == 127  # what a shell or make reports for a missing command
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmcc: error: ") and setting in lines[0]
    assert sorted(p.name for p in (tree / "out").iterdir()) == []
    assert not (tree / "pwned").exists()  # the setting names a program; no shell runs it


def _wrapper(tmp_path: Path, clang: str, version_text: str) -> tuple[str, Path]:
    """A compiler that reports `version_text` and otherwise runs the real clang, logging calls."""
    calls = tmp_path / "calls.log"
    bin_dir = tmp_path / "foreign"
    bin_dir.mkdir()
    (bin_dir / "opt").symlink_to(opt_beside(clang))  # opt beside it is LLVM 19's, so only clang lies
    return script(bin_dir / "cc", f"""\
if [ "$1" = --version ]; then printf '%s\\n' '{version_text}'; exit 0; fi
printf '%s\\n' "$*" >> {calls}
exec {clang} "$@"
"""), calls


@pytest.mark.parametrize("version_text, warning", [
    ("Debian clang version 18.1.8 (11)", "18.1.8"),
    ("gcc (Debian 12.2.0-14) 12.2.0", "is not clang"),
], ids=["clang-18", "gcc"])
def test_compiler_other_than_clang_19_warns_once_and_compiles_through_it(
        tree, tmp_path, clang, llmcc, env, version_text, warning):
    plain = _build(clang, ARGS, tree, env)
    env["LLMCC_CLANG"], calls = _wrapper(tmp_path, clang, version_text)
    tuned = _build(llmcc, ARGS, tree, env)
    _assert_like_plain(plain, tuned, tree, warning)
    assert tuned[2] == plain[2]
    assert calls.read_text().splitlines()[-1] == " ".join(ARGS)  # the user's call, unchanged
    assert log_outcomes(env) == ["fallback"]


# --- the cache directory -------------------------------------------------------------------------

@contextlib.contextmanager
def _mount(target: Path, *options: str):
    """Mount over `target` for the duration (root only: skip where that is not possible)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem needs root")
    done = subprocess.run(["mount", *options, str(target), str(target)], capture_output=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.decode().strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@contextlib.contextmanager
def _read_only(directory: Path):
    """`directory` read-only even for root: a read-only bind mount (chmod is enough for others)."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [directory, *directory.rglob("*")]}
        for path, mode in modes.items():
            path.chmod(mode & ~0o222)
        try:
            yield directory
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    with _mount(directory, "--bind", "-o", "ro"):
        probe = directory / "probe"
        with pytest.raises(OSError):
            probe.write_text("")
        yield directory


def _fill(directory: Path) -> Path:
    """Fill the filesystem holding `directory` to the last byte."""
    filler = directory / "filler"
    chunk = b"\0" * 4096
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError:
            pass
    assert os.statvfs(directory).f_bavail == 0
    return filler


def test_read_only_cache_still_compiles_and_keeps_its_entries(tree, clang, llmcc, env):
    """A hit needs no write: it is served quietly; a miss warns once that it cannot store."""
    first = _build(llmcc, ARGS, tree, env)
    assert first[0] == 0
    plain = _build(clang, ARGS, tree, env)
    with _read_only(Path(env["LLMCC_CACHE_DIR"])):
        during = _build(llmcc, ARGS, tree, env)
        other = _build(llmcc, ["-Oz", "-c", "quiet.c"], tree, env, ["quiet.o"])
        other_plain = _build(clang, ["-Oz", "-c", "quiet.c"], tree, env, ["quiet.o"])
    _assert_like_plain(plain, during, tree, None)
    assert during[2] == first[2]
    assert log_outcomes(env)[-2:] == ["direct_hit", "miss"]
    _assert_like_plain(other_plain, other, tree, "cache")
    again = _build(llmcc, ARGS, tree, env)
    assert again == first and log_events(env)[-1]["outcome"] == "direct_hit"


@pytest.fixture
def tiny_fs(tmp_path) -> Path:
    """A 4 MB tmpfs of this test's own."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    with _mount(mount_point, "-t", "tmpfs", "-o", "size=4m"):
        yield mount_point


def test_cache_on_a_full_filesystem_still_compiles_and_keeps_its_entries(tree, tiny_fs, clang,
                                                                         llmcc, env):
    env["LLMCC_CACHE_DIR"] = str(tiny_fs / "cache")
    first = _build(llmcc, ARGS, tree, env)
    assert first[0] == 0 and log_outcomes(env) == ["miss"]
    plain = _build(clang, ARGS, tree, env)
    quiet_args = ["-Oz", "-c", "quiet.c"]
    quiet_plain = _build(clang, quiet_args, tree, env, ["quiet.o"])
    filler = _fill(tiny_fs)
    hit = _build(llmcc, ARGS, tree, env)
    new = _build(llmcc, quiet_args, tree, env, ["quiet.o"])
    for plain_run, tuned_run in ((plain, hit), (quiet_plain, new)):
        assert len(_ours(tuned_run[1])) <= 1
        warning = "cache" if _ours(tuned_run[1]) else None
        _assert_like_plain(plain_run, tuned_run, tree, warning)
    assert hit[2] == first[2]
    filler.unlink()
    assert _build(llmcc, ARGS, tree, env) == first
    assert log_events(env)[-1]["outcome"] == "direct_hit"
    assert _ours(_build(llmcc, quiet_args, tree, env, ["quiet.o"])[1]) == []


@pytest.mark.parametrize("full", ["object", "depfile", "both"])
def test_full_disk_while_writing_the_output_ends_as_plain_clang(tree, tiny_fs, clang, llmcc,
                                                                env, full):
    """Clang itself fails (exit 1, a stack dump); llmcc must leave exactly what clang leaves."""
    out = {"object": tiny_fs, "depfile": tree / "out", "both": tiny_fs}[full]
    dep = {"object": tree / "out", "depfile": tiny_fs, "both": tiny_fs}[full]
    args = ["-Oz", "-MD", "-MF", str(dep / "big.d"), "-c", "big.c", "-o", str(out / "big.o")]
    assert len(run([clang, "-Oz", "-c", "big.c", "-o", "-"], cwd=tree).stdout) > 8192
    _fill(tiny_fs)
    outcomes = []
    for program in (clang, llmcc):
        done = run([program, *args], cwd=tree, env=env)
        left = {p.name: p.read_bytes() for d in {out, dep} for p in d.iterdir()
                if p.name != "filler"}
        for name in left:
            os.unlink(os.path.join(out if name.endswith(".o") else dep, name))
        outcomes.append((done.returncode, left, done.stderr))
    (rc, left, stderr), (tuned_rc, tuned_left, tuned_stderr) = outcomes
    assert rc != 0 and b"No space left on device" in stderr
    assert (tuned_rc, tuned_left) == (rc, left)
    assert _ours(tuned_stderr) == [] and b"No space left on device" in tuned_stderr
    assert log_outcomes(env) == ["fallback"]
    assert _leftovers(tree, tree.parent / "tmp") == []


def _damage_database(cache_dir: str, damage: str) -> None:
    database = Path(cache_dir) / "cache.db"
    size = database.stat().st_size
    if damage == "garbage":
        database.write_bytes(os.urandom(size))
    else:  # keep the header, so SQLite opens the file and meets the damage in its pages
        with open(database, "r+b") as handle:
            handle.seek(4096)
            handle.write(b"\xa5" * (size - 4096))


@pytest.mark.parametrize("damage", ["garbage", "damaged-pages"])
def test_corrupt_cache_database_still_compiles_with_one_warning(tree, clang, llmcc, env, damage):
    """Every compile that needs the database warns; a direct hit, which reads only its own
    file, is still served."""
    first = _build(llmcc, ARGS, tree, env)
    plain = _build(clang, ARGS, tree, env)
    quiet_args = ["-Oz", "-c", "quiet.c"]
    quiet_plain = _build(clang, quiet_args, tree, env, ["quiet.o"])
    _damage_database(env["LLMCC_CACHE_DIR"], damage)
    shutil.rmtree(Path(env["LLMCC_CACHE_DIR"]) / hits.DIRECTORY)
    tuned = _build(llmcc, ARGS, tree, env)
    _assert_like_plain(plain, tuned, tree, "cache")
    assert tuned[2] == first[2]
    _assert_like_plain(quiet_plain, _build(llmcc, quiet_args, tree, env, ["quiet.o"]), tree,
                       "cache")
    assert _build(llmcc, ARGS, tree, env) == first
    assert log_outcomes(env)[-3:] == ["miss", "miss", "direct_hit"]


def test_clear_starts_a_database_damaged_beyond_opening_afresh(tree, llmcc, llmcc_ctl, env):
    first = _build(llmcc, ARGS, tree, env)
    _damage_database(env["LLMCC_CACHE_DIR"], "garbage")
    quiet = _build(llmcc, ["-Oz", "-c", "quiet.c"], tree, env, ["quiet.o"])
    assert _ours(quiet[1])  # the damage is reported
    cleared = run([llmcc_ctl, "clear"], cwd=tree, env=env)
    assert cleared.returncode == 0, cleared.stderr
    again = _build(llmcc, ARGS, tree, env)
    assert _ours(again[1]) == [] and again[2] == first[2]
    assert _build(llmcc, ARGS, tree, env)[2] == first[2]
    assert log_outcomes(env)[-2:] == ["miss", "direct_hit"]  # cleared, and the fresh cache works


@pytest.mark.parametrize("store", ["database", "hits"])
def test_damaged_cache_entry_reads_as_a_miss_and_is_replaced(tree, clang, llmcc, env, store):
    """A decision too big for SQLite lives in its own file, and a direct hit's entry in
    another; a truncated one of either is rewritten."""
    args = ["-Oz", "-c", "huge.c"]
    first = _build(llmcc, args, tree, env, ["huge.o"])
    assert first[0] == 0
    hit_files = Path(env["LLMCC_CACHE_DIR"]) / hits.DIRECTORY
    if store == "database":
        values = list(Path(env["LLMCC_CACHE_DIR"]).rglob("*.val"))
        assert values, "the decision should be stored in a file of its own"
        shutil.rmtree(hit_files)  # so that the next compile reads the database
    else:
        values = list(hit_files.rglob("direct-*"))
        assert len(values) == 1
    for path in values:
        path.write_bytes(path.read_bytes()[:100])
    plain = _build(clang, args, tree, env, ["huge.o"])
    damaged = _build(llmcc, args, tree, env, ["huge.o"])
    _assert_like_plain(plain, damaged, tree, "cache")
    assert damaged[2] == first[2]
    healed = _build(llmcc, args, tree, env, ["huge.o"])
    assert healed == first
    assert log_outcomes(env)[-1] == "direct_hit"


@pytest.mark.parametrize("stale", [{"format": FORMAT - 1}, {"format": None}, "not a dict"],
                         ids=["older-format", "no-format", "other-shape"])
def test_entries_of_an_older_llmcc_read_as_misses_and_are_replaced(tree, clang, llmcc, env,
                                                                   stale):
    import diskcache

    first = _build(llmcc, ARGS, tree, env)
    key = log_events(env)[-1]["key"]
    with diskcache.Cache(env["LLMCC_CACHE_DIR"]) as cache:
        old = cache[f"ir:{key}"]
        # an entry as an older llmcc wrote it: another shape, and an object that is not one
        cache[f"ir:{key}"] = ({**old, **stale, "object": b"stale"} if isinstance(stale, dict)
                              else stale)
    # and the direct hit's files, from an older llmcc or another Python
    for path in (Path(env["LLMCC_CACHE_DIR"]) / hits.DIRECTORY).rglob("*-*"):
        path.write_bytes(path.read_bytes().replace(hits.HEADER, b"llmcc hits 0 py3.9\n", 1))
    plain = _build(clang, ARGS, tree, env)
    again = _build(llmcc, ARGS, tree, env)
    _assert_like_plain(plain, again, tree, None)
    assert again == first
    assert log_outcomes(env) == ["miss", "miss"]
    with diskcache.Cache(env["LLMCC_CACHE_DIR"]) as cache:
        assert cache[f"ir:{key}"]["format"] == FORMAT
        assert cache[f"ir:{key}"]["object"] == first[2]["out/size.o"]
    assert _build(llmcc, ARGS, tree, env) == first
    assert log_outcomes(env)[-1] == "direct_hit"


# --- parallel builds -----------------------------------------------------------------------------

UNITS = 30

MAKEFILE = """\
SOURCES := $(sort $(wildcard *.c))
OBJECTS := $(SOURCES:.c=.o)
prog: $(OBJECTS)
\t$(CC) -o $@ $(OBJECTS)
%.o: %.c
\t$(CC) -Oz -Wall -MD -c $< -o $@
-include $(OBJECTS:.o=.d)
"""


def _project(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "Makefile").write_text(MAKEFILE)
    (root / "units.h").write_text("".join(f"int unit{i}(int);\n" for i in range(UNITS)))
    for i in range(UNITS):
        (root / f"u{i:02}.c").write_text(f"""#include "units.h"
static int table{i}[{8 + i}] = {{{', '.join(str(i * j % 7) for j in range(8 + i))}}};
static int step{i}(int x) {{ return (x * {i + 3}) ^ (x >> {i % 5 + 1}); }}
int unit{i}(int n) {{
    int s = {i};
    for (int k = 0; k < n; k++) s += step{i}(k) + table{i}[k % {8 + i}];
    return s;
}}
""")
    (root / "main.c").write_text("""#include <stdio.h>
#include "units.h"
int main(void) {
    long total = 0;
""" + "".join(f"    total += unit{i}({i + 5});\n" for i in range(UNITS)) + """\
    printf("%ld\\n", total);
    return 0;
}
""")
    return root


def _make(root: Path, compiler: str, env: dict[str, str], jobs: int) -> subprocess.Popen:
    return subprocess.Popen(["make", f"-j{jobs}", f"CC={compiler}"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _built(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())
            if p.suffix in (".o", ".d") or p.name == "prog"}


def test_two_parallel_builds_on_one_cache_equal_a_clean_build(tmp_path, clang, llmcc, env):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env["LLMCC_CANDIDATES"] = "1"  # the race is the point here, not the search
    plain_env = {**env, "LLMCC_DISABLE": "1"}
    plain = _make(_project(tmp_path / "plain"), clang, plain_env, 8)
    builds = [_make(_project(tmp_path / name), llmcc, env, 8) for name in ("a", "b")]
    results = [(p.wait(timeout=600), *p.communicate()) for p in (plain, *builds)]
    for rc, _, stderr in results:
        assert rc == 0, stderr.decode()
        assert b"llmcc" not in stderr and b"Traceback" not in stderr
    clean_env = {**env, "LLMCC_CACHE_DIR": str(tmp_path / "clean-cache")}
    clean = _make(_project(tmp_path / "clean"), llmcc, clean_env, 2)
    assert clean.wait(timeout=600) == 0, clean.communicate()[1].decode()
    outputs = {name: _built(tmp_path / name) for name in ("plain", "a", "b", "clean")}
    assert len([n for n in outputs["clean"] if n.endswith(".o")]) == UNITS + 1
    assert outputs["a"] == outputs["clean"] and outputs["b"] == outputs["clean"]
    for name, blob in outputs["clean"].items():
        plain_blob = outputs["plain"][name]
        if name.endswith(".o"):
            plain_info, tuned_info = read_object(plain_blob), read_object(blob)
            assert tuned_info.size <= plain_info.size and tuned_info.defined == plain_info.defined
        elif name.endswith(".d"):
            assert blob == plain_blob
    ran = {name: subprocess.run([str(tmp_path / name / "prog")], capture_output=True,
                                check=False).stdout for name in outputs}
    assert len(set(ran.values())) == 1 and ran["plain"].strip().isdigit()
    outcomes = [e["outcome"] for e in log_events(env) if e["outcome"] != "passthrough"]
    assert len(outcomes) == 3 * (UNITS + 1)
    assert set(outcomes) <= {"miss", "hit", "direct_hit"}
    assert _leftovers(tmp_path / "a", tmp_path / "b") == []


# --- signals -------------------------------------------------------------------------------------

def _slow_opt(tmp_path: Path, clang: str) -> tuple[str, Path]:
    """An opt that announces itself and then takes its time."""
    real_opt = opt_beside(clang)
    started = tmp_path / "opt-started"
    return script(tmp_path / "opt", f"""\
if [ "$1" = --version ]; then exec {real_opt} --version; fi
touch {started}
sleep 30
exec {real_opt} "$@"
"""), started


def _start(program: str, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """In a process group of its own, as a job started from a shell (Ctrl-C goes to all)."""
    return subprocess.Popen([program, *args], cwd=cwd, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=restore_default_signals)  # noqa: PLW1509 - no threads here


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "opt never started"
        time.sleep(0.02)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signal_during_a_compile_leaves_no_output_and_a_working_cache(tree, tmp_path, clang,
                                                                      llmcc, env, signum):
    (tree / "out" / "size.o").write_bytes(b"object of the previous build")
    plain = _build(clang, ARGS, tree, env)
    env_slow = {**env, "LLMCC_OPT": _slow_opt(tmp_path, clang)[0]}
    started = tmp_path / "opt-started"
    (tree / "out" / "size.o").write_bytes(b"object of the previous build")
    process = _start(llmcc, ARGS, tree, env_slow)
    _wait_for(started, process)
    os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=60)
    # exits as the shell reports a job killed by the signal, and says nothing about it
    assert process.returncode in (128 + signum, -signum)
    assert _ours(stderr) == [] and stderr == b""
    assert (tree / "out" / "size.o").read_bytes() == b"object of the previous build"
    assert not (tree / "out" / "size.d").exists()
    assert _leftovers(tree, tmp_path / "tmp") == []
    after = _build(llmcc, ARGS, tree, env)
    _assert_like_plain(plain, after, tree, None)
    assert _build(llmcc, ARGS, tree, env) == after
    assert log_outcomes(env)[-2:] == ["miss", "direct_hit"]


def _frames(text: str) -> list[str]:
    """The `  File "...", line N, in ...` lines of the tracebacks in `text`."""
    return [line for line in text.splitlines() if line.startswith("  File ")]


def _interrupted_while_python_starts(returncode: int, stderr: bytes) -> bool:
    """Ctrl-C in the first few tens of milliseconds, before llmcc's `main` runs: CPython itself
    reports the KeyboardInterrupt (exit 1) while it sets up its standard streams, imports
    `site`, sets the script's loader or parses the script (a bare `KeyboardInterrupt`: no frame
    runs yet), or as the console script starts (its line 0) or imports llmcc.launch, a few lines
    (a traceback, then death by SIGINT). Python's own start-up, not llmcc's logic: tolerated by
    name, counted apart, and never taken for an interrupt that landed."""
    text = stderr.decode(errors="replace")
    if returncode == 1:
        return text == "KeyboardInterrupt\n" or text.startswith((
            "Fatal Python error: init_import_site", "Fatal Python error: init_sys_streams",
            "python: failed to set __main__.__loader__"))
    frames = _frames(text)
    return (returncode == -signal.SIGINT and text.rstrip().endswith("KeyboardInterrupt")
            and "cc()" not in text
            and ("from llmcc.launch import" in text
                 or len(frames) == 1 and frames[0].endswith(", line 0, in <module>")))


IMPORTER_CHECK = "Failed checking if argv[0] is an import path entry\n"


def _without_importer_check_report(stderr: bytes) -> bytes:
    """stderr less CPython's report of a Ctrl-C in its check of argv[0] as an import path entry.

    Before running the console script CPython asks zipimport whether the script is a zip file; a
    KeyboardInterrupt there is printed (this line, a traceback in frozen importlib or zipimport
    frames, `KeyboardInterrupt`) and CPython then runs the script as if nothing happened: a
    compile like any other follows, and it is checked as one.
    """
    text = stderr.decode(errors="replace")
    if not text.startswith(IMPORTER_CHECK):
        return stderr
    report, end, rest = text.partition("\nKeyboardInterrupt\n")
    assert end, text
    frames = _frames(report)
    assert frames and all(line.startswith('  File "<frozen ') for line in frames), text
    return rest.encode()


# The compile as the console script runs it, with a Ctrl-C that lands where CPython cannot raise
# it (a weakref callback, as an import lock's is) just as llmcc's main starts.
LOST_INTERRUPT = """
import sys, weakref
import llmcc.cli
from llmcc import launch

class Doomed:
    pass

def interrupt(_):
    raise KeyboardInterrupt

doomed = Doomed()
ref = weakref.ref(doomed, interrupt)
real_main = llmcc.cli.main

def main(*args, **kwargs):
    global doomed
    del doomed
    return real_main(*args, **kwargs)

llmcc.cli.main = main
sys.argv = ["llmcc", *sys.argv[1:]]
launch.cc()
"""


def test_a_ctrl_c_python_cannot_raise_ends_the_compile_as_interrupted_and_prints_nothing(
        tree, clang, env):
    plain = _build(clang, ARGS, tree, env)
    done = subprocess.run([sys.executable, "-c", LOST_INTERRUPT, *ARGS], cwd=tree, env=env,
                          capture_output=True, check=False)
    assert done.returncode == 130
    assert "Exception ignored" not in done.stderr.decode()
    outputs = {name: (tree / name).read_bytes() for name in OUTPUTS}
    # otherwise as clang's compile: its diagnostics, and a whole object, plain or verified smaller
    _assert_like_plain(plain, (plain[0], done.stderr, outputs), tree, None)


def test_ctrl_c_at_any_moment_leaves_the_old_object_or_a_whole_new_one(tree, tmp_path, clang,
                                                                       llmcc, llmcc_ctl, env):
    """Interrupt real compiles at moments spread over their run, cold and warm cache alike.

    An interrupt that comes after the compile finished tests nothing, so in each state at least
    one must land (llmcc ends by the signal); the moments are swept again until one does.
    """
    plain = _build(clang, ARGS, tree, env)
    started = time.monotonic()
    reference = _build(llmcc, ARGS, tree, env)
    cold = time.monotonic() - started
    _assert_like_plain(plain, reference, tree, None)
    old = b"object of the previous build"

    def interrupt(after: float, clear: bool) -> str:
        """One compile, Ctrl-C `after` seconds in; "finished", "landed" or "python-startup"."""
        if clear:
            run([llmcc_ctl, "clear"], cwd=tree, env=env)
        (tree / "out" / "size.o").write_bytes(old)
        (tree / "out" / "size.d").unlink(missing_ok=True)
        process = _start(llmcc, ARGS, tree, env)
        time.sleep(after)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        stderr = _without_importer_check_report(stderr)
        obj = (tree / "out" / "size.o").read_bytes()
        assert _leftovers(tree, tmp_path / "tmp") == []
        if _interrupted_while_python_starts(process.returncode, stderr):
            assert obj == old and not (tree / "out" / "size.d").exists()
            return "python-startup"
        assert process.returncode in (0, 130, -signal.SIGINT), stderr.decode()
        assert _ours(stderr) == [], stderr.decode()
        if process.returncode == 0:
            assert obj == reference[2]["out/size.o"]
            assert (tree / "out" / "size.d").read_bytes() == plain[2]["out/size.d"]
            return "finished"
        assert obj in (old, reference[2]["out/size.o"])
        return "landed"

    for state in ("cold", "warm"):
        took = cold
        if state == "warm":  # fill the cache, then time a compile that finds the object in it
            assert _build(llmcc, ARGS, tree, env) == reference
            started = time.monotonic()
            assert _build(llmcc, ARGS, tree, env) == reference
            took = time.monotonic() - started
            assert log_outcomes(env)[-1] == "direct_hit"
        seen: list[str] = []
        for _ in range(3):  # a busy machine may let every compile finish first: sweep again
            seen += [interrupt(took * n / 8, state == "cold") for n in range(1, 8)]
            if "landed" in seen:
                break
        assert "landed" in seen, f"no Ctrl-C landed in a {state} compile ({took:.3f}s): {seen}"
    assert _build(llmcc, ARGS, tree, env) == reference

