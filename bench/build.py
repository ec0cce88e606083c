"""Build benchmark: real C projects built with plain clang-19 -Oz and with llmcc, sizes and times.

    .venv/bin/python bench/build.py                      # 5 projects, k = 1,3,5,10 (~15-25 min)
    .venv/bin/python bench/build.py --quick              # 2 projects, k = 1,3 (a smoke run)
    .venv/bin/python bench/build.py --projects bzip2,lmdb --ks 1,3 --out bench/out
    .venv/bin/python bench/build.py --projects cxx --ks 3   # 4 C++ projects (CMake)

The projects are Debian source packages that are NOT in the training allowlist
(llmcc.train.corpus.ALLOWLIST), so llmcc is measured on code its advisor never saw. Each is
fetched once with `apt-get source --download-only` into ~/.cache/llmcc-bench/sources, unpacked
once into a pristine tree, and for every compiler setting copied afresh into the same build
path (so __FILE__ strings are identical) and configured. Every measured build starts from a
clean tree (`make clean`, then any object the clean left behind is removed).

Per project: plain clang -Oz; llmcc cold (empty LLMCC_CACHE_DIR) for each k; llmcc warm
(clean, rebuild with the cache of the same k); and -O0 builds (not intercepted) with llmcc and
with plain clang for the passthrough cost. Results: a Markdown table on stdout, and in --out
results.csv (one row per project x setting), objects.csv (one row per object), summary.md and
size_time.png. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

try:
    from llmcc.config import SETTINGS
    from llmcc.objfile import read_object
    from llmcc.toolchain import cxx_name
    from llmcc.train import debian
    from llmcc.train.corpus import ALLOWLIST
except ImportError as _err:  # pragma: no cover - run with the wrong interpreter
    sys.exit(f"bench/build.py: cannot import llmcc ({_err}); run it with the Python that has "
             "llmcc installed, e.g. .venv/bin/python bench/build.py")

from build_report import (
    checks_table,
    details_table,
    markdown_table,
    plot,
    stages_table,
    table_rows,
    write_csv,
    write_objects_csv,
)

HERE = Path(__file__).resolve().parent
DEFAULT_K = int(next(s.default for s in SETTINGS if s.name == "candidates"))
BUILD_TIMEOUT = 1800  # seconds one configure or build may take
OBJECT_SUFFIXES = (".o", ".lo", ".obj")


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(Path.home(), ".cache")
    return Path(base) / "llmcc-bench"


# the builds' XDG_RUNTIME_DIR, where llmcc's fork servers put their sockets (short: a socket
# path has at most 107 bytes)
RUNTIME_DIR = Path(f"/tmp/llmcc-bench-{os.getuid()}")


# --- the projects ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Project:
    """How to build one Debian source package with a given compiler and level.

    Command templates may use {cc} (the C compiler a Makefile is given: clang or llmcc),
    {clang} (the real clang), {launcher} (llmcc, or empty for plain clang: CMake's compiler
    launcher), {cflags} (-Oz or -O0) and {jobs}.
    """

    name: str
    package: str  # the Debian source package
    why: str
    subdir: str = ""  # where configure and make run, inside the upstream tree
    configure: tuple[str, ...] = ()
    build: tuple[str, ...] = ("make", "-j{jobs}", "CC={cc}", "CFLAGS={cflags}")
    clean: tuple[str, ...] = ("make", "clean")


CMAKE = ("cmake", "-S", ".", "-B", "_build", "-G", "Unix Makefiles", "-DCMAKE_BUILD_TYPE=None",
         "-DCMAKE_C_COMPILER={clang}", "-DCMAKE_C_COMPILER_LAUNCHER={launcher}",
         "-DCMAKE_C_FLAGS={cflags}")
# a C++ project: its C++ compiles through llmcc as well ({clangxx}: clang's C++ driver)
CMAKE_CXX = (*CMAKE, "-DCMAKE_CXX_COMPILER={clangxx}", "-DCMAKE_CXX_COMPILER_LAUNCHER={launcher}",
             "-DCMAKE_CXX_FLAGS={cflags}")
# Debian C++ source packages -> CMake options that leave out what needs more than the compiler
# (demos, tests against other libraries): bench/unseen_cxx.py's projects
CXX_OPTIONS = {
    "box2d": ("-DBOX2D_BUILD_TESTBED=OFF", "-DBOX2D_BUILD_UNIT_TESTS=OFF"),
    "double-conversion": ("-DBUILD_TESTING=OFF",),
    "meshoptimizer": ("-DMESHOPT_BUILD_DEMO=OFF", "-DMESHOPT_BUILD_GLTFPACK=OFF"),
    "log4cplus": ("-DLOG4CPLUS_BUILD_TESTING=OFF", "-DLOG4CPLUS_BUILD_LOGGINGSERVER=OFF"),
    "flatbuffers": ("-DFLATBUFFERS_BUILD_TESTS=OFF",),
    "benchmark": ("-DBENCHMARK_ENABLE_TESTING=OFF", "-DBENCHMARK_ENABLE_GTEST_TESTS=OFF"),
    "jsonnet": ("-DBUILD_TESTS=OFF",),
    "highway": ("-DHWY_ENABLE_TESTS=OFF", "-DHWY_ENABLE_EXAMPLES=OFF", "-DHWY_ENABLE_CONTRIB=OFF"),
}
CMAKE_BUILD = ("make", "-C", "_build", "-j{jobs}")
CMAKE_CLEAN = ("make", "-C", "_build", "clean")

PROJECTS = {p.name: p for p in (
    Project("bzip2", "bzip2", "classic hand-written Makefile, 9 TUs, compression code",
            build=("make", "-j{jobs}", "CC={cc}", "CFLAGS={cflags} -D_FILE_OFFSET_BITS=64",
                   "libbz2.a", "bzip2", "bzip2recover")),
    Project("libyaml", "libyaml", "CMake project (llmcc as compiler launcher), parser-heavy",
            configure=CMAKE, build=("make", "-C", "_build", "-j{jobs}"),
            clean=("make", "-C", "_build", "clean")),
    Project("lmdb", "lmdb", "Makefile, one large TU (mdb.c) built static and -fPIC, 9 tools",
            subdir="libraries/liblmdb",
            build=("make", "-j{jobs}", "CC={cc}", "OPT={cflags}")),
    Project("zopfli", "zopfli", "Makefile, 13 TUs of search-heavy compression code",
            build=("make", "-j{jobs}", "CC={cc}", "CFLAGS={cflags}", "zopfli", "libzopfli.a")),
    Project("libdeflate", "libdeflate", "Makefile, static and shared objects, CPU dispatch",
            build=("make", "-j{jobs}", "CC={cc}", "CFLAGS={cflags}")),
    # Not in the default set: tiny (cjson) or a slow configure step (lzo2).
    Project("cjson", "cjson", "Makefile, 2 TUs (extra)",
            build=("make", "-j{jobs}", "CC={cc}", "CFLAGS=-std=c89 {cflags}")),
    Project("lzo2", "lzo2", "autotools, ~100 small TUs; configure takes ~20 s (extra)",
            configure=("./configure", "CC={cc}", "CFLAGS={cflags}", "--disable-shared"),
            build=("make", "-j{jobs}")),
    # C++ (`--projects cxx`): the CMake projects of bench/unseen_cxx.py and log4cplus, libraries
    # only
    Project("box2d", "box2d", "C++, CMake: a physics engine (extra)",
            configure=(*CMAKE_CXX, *CXX_OPTIONS["box2d"]), build=CMAKE_BUILD, clean=CMAKE_CLEAN),
    Project("double-conversion", "double-conversion", "C++, CMake: number formatting "
            "(extra)", configure=(*CMAKE_CXX, *CXX_OPTIONS["double-conversion"]),
            build=CMAKE_BUILD, clean=CMAKE_CLEAN),
    Project("meshoptimizer", "meshoptimizer", "C++, CMake: mesh processing (extra)",
            configure=(*CMAKE_CXX, *CXX_OPTIONS["meshoptimizer"]), build=CMAKE_BUILD,
            clean=CMAKE_CLEAN),
    Project("log4cplus", "log4cplus", "C++, CMake: logging, std::string and streams "
            "throughout (extra)", configure=(*CMAKE_CXX, *CXX_OPTIONS["log4cplus"]),
            build=CMAKE_BUILD, clean=CMAKE_CLEAN),
)}
DEFAULT_PROJECTS = ("bzip2", "libyaml", "lmdb", "zopfli", "libdeflate")
CXX_PROJECTS = tuple(name for name in CXX_OPTIONS if name in PROJECTS)  # the C++ Projects above
QUICK_PROJECTS = ("bzip2", "libyaml")
_overlap = sorted({p.package for p in PROJECTS.values()} & set(ALLOWLIST))
assert not _overlap, f"benchmark projects must not be training packages: {_overlap}"


class BuildFailed(Exception):
    """A configure or build step failed; the message says which and where its log is."""


# --- sources ---------------------------------------------------------------------------------

def fetch(package: str, sources: Path) -> Path:
    """The package's upstream tarball, downloaded once (deb-src must be enabled)."""
    if package in ALLOWLIST:
        raise SystemExit(f"{package} is a training package: never benchmark on it")
    try:
        return Path(debian.fetch(package, str(sources)))
    except debian.FetchFailed as err:
        raise BuildFailed(str(err)) from None


def pristine_tree(package: str, cache: Path) -> Path:
    """The unpacked upstream tree, made once and never built in."""
    tarball = fetch(package, cache / "sources")
    stem = tarball.name.split(".orig.tar.")[0]
    target = cache / "trees" / stem
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpack-") as scratch:
            with tarfile.open(tarball) as archive:
                archive.extractall(scratch, filter="data")
            entries = os.listdir(scratch)
            top = os.path.join(scratch, entries[0]) if len(entries) == 1 else scratch
            if top != scratch:
                os.replace(top, target)
            else:
                shutil.copytree(scratch, target)
    return target


# --- the llmcc under test --------------------------------------------------------------------

# What pip (26, as scripts/setup.sh installs it) writes for a console script. The template of
# older pips imported `re`, about 11 ms a call here that llmcc itself does not spend.
CONSOLE_SCRIPT = """#!{python}
import sys
from {module} import {entry}
if __name__ == '__main__':
    sys.argv[0] = sys.argv[0].removesuffix('.exe')
    sys.exit({entry}())
"""


@dataclass
class Llmcc:
    cc: str  # what CC is set to
    ctl: list[str]  # how to run llmcc-ctl
    pinned: bool
    package_dir: str  # the llmcc package it runs
    source: str  # where that came from


def pin_llmcc(root: Path) -> Llmcc:
    """A frozen copy of the imported llmcc package, installed the way pip would: its own venv.

    The venv holds the copy (advisor data included) and pip-style console scripts; its
    dependencies come from the running interpreter's site-packages through a .pth path line
    (whose own .pth files, such as an editable install's import hook, are not run). So the run
    measures one llmcc and one advisor data file even if the checkout changes meanwhile, and
    the passthrough cost is that of a regular install, not of a developer's editable one.
    """
    import compileall
    import site
    import sysconfig

    import llmcc

    source = Path(llmcc.__file__).resolve().parent
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run([str(python), "-c", query], capture_output=True, text=True,
                             check=True).stdout.strip()
    deps = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    if site.ENABLE_USER_SITE:
        deps.append(site.getusersitepackages())
    lines = [d for d in dict.fromkeys(deps) if os.path.isdir(d) and d != purelib]
    Path(purelib, "llmcc-bench-deps.pth").write_text("".join(d + "\n" for d in lines))
    shutil.copytree(source, Path(purelib, "llmcc"), ignore=shutil.ignore_patterns("__pycache__"))
    compileall.compile_dir(Path(purelib, "llmcc"), quiet=1)
    for name, module, entry in (("llmcc", "llmcc.launch", "cc"),
                                ("llmcc-ctl", "llmcc.ctl", "main")):
        path = root / "bin" / name
        path.write_text(CONSOLE_SCRIPT.format(python=python, module=module, entry=entry))
        path.chmod(0o755)
    return Llmcc(str(root / "bin" / "llmcc"), [str(root / "bin" / "llmcc-ctl")], True,
                 str(Path(purelib, "llmcc")), str(source))


def installed_llmcc() -> Llmcc:
    import llmcc

    def command(name: str) -> str:
        beside = os.path.join(os.path.dirname(sys.executable), name)
        found = beside if os.path.exists(beside) else shutil.which(name)
        if not found:
            raise SystemExit(f"bench/build.py: {name} is not installed beside {sys.executable}")
        return found

    package = str(Path(llmcc.__file__).resolve().parent)
    return Llmcc(command("llmcc"), [command("llmcc-ctl")], False, package, package)


# --- running builds --------------------------------------------------------------------------

def clean_environment(extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment without anything that would change the builds, plus `extra`."""
    drop = {"CC", "CXX", "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "MAKEFLAGS", "MFLAGS",
            "MAKELEVEL", "MAKEFILES", "GNUMAKEFLAGS", "CCACHE_PREFIX", "CMAKE_C_COMPILER_LAUNCHER",
            "CMAKE_GENERATOR", "CMAKE_BUILD_TYPE"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("LLMCC_")}
    env["LLMCC_CONFIG"] = os.devnull  # no user config file: only what the benchmark sets
    env["XDG_RUNTIME_DIR"] = str(RUNTIME_DIR)  # the benchmark's fork servers, not the user's
    env.update(extra)
    return env


def fork_servers(runtime: Path = RUNTIME_DIR) -> list:
    """The fork servers (llmcc.forkserver) llmcc started with XDG_RUNTIME_DIR=`runtime` (by
    default, for the benchmark's builds)."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = process.info["cmdline"] or ()
        if "llmcc.forkserver" in command and any(str(runtime) in a for a in command):
            found.append(process)
    return found


def stop_fork_servers(runtime: Path = RUNTIME_DIR) -> None:
    """Before a cold build: it starts its own fork server and pays for that, as a user's first
    build does."""
    import psutil

    servers = fork_servers(runtime)
    for process in servers:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(servers, timeout=10)


def fork_server_cpu(runtime: Path = RUNTIME_DIR) -> dict[int, float]:
    """pid -> CPU seconds of each fork server and of the compiles it forked (reaped at once,
    so they count as its children's)."""
    import psutil

    seconds = {}
    for process in fork_servers(runtime):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            seconds[process.pid] = (times.user + times.system + times.children_user
                                    + times.children_system)
    return seconds


@dataclass
class Run:
    wall: float
    cpu: float  # user + system seconds of every process the build ran


def run_step(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> Run:
    """Run one step with its output appended to `log`; BuildFailed when it does not succeed.
    Its CPU counts the compiles fork servers ran for it (and a server's start)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    servers_before = fork_server_cpu()
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as err:
            raise BuildFailed(f"cannot run {cmd[0]}: {err}") from None
        try:
            code = proc.wait(timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise BuildFailed(f"{cmd[0]} ran past {BUILD_TIMEOUT}s (log: {log})") from None
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
        wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise BuildFailed(f"`{' '.join(cmd)}` exited {code} (log: {log})")
    time.sleep(0.1)  # a compile's child answers just before it exits and is reaped
    served = sum(seconds - servers_before.get(pid, 0.0)
                 for pid, seconds in fork_server_cpu().items())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) + served
    return Run(wall, cpu)


@dataclass
class Obj:
    size: int  # text + data, as llvm-size counts them
    digest: str


def _is_relocatable(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(18)
    except OSError:
        return False
    return len(head) == 18 and head[:4] == b"\x7fELF" and head[16:18] == b"\x01\x00"


def object_paths(tree: Path) -> set[str]:
    found = set()
    for dirpath, _dirs, files in os.walk(tree):
        for name in files:
            if name.endswith(OBJECT_SUFFIXES):
                path = Path(dirpath) / name
                if _is_relocatable(path):
                    found.add(str(path.relative_to(tree)))
    return found


def read_objects(tree: Path, skip: set[str]) -> dict[str, Obj]:
    objects = {}
    for rel in sorted(object_paths(tree) - skip):
        blob = (tree / rel).read_bytes()
        try:
            size = read_object(blob).size
        except Exception as err:  # noqa: BLE001 - NotAnObject, or a truncated or odd ELF file
            say(f"  note: {tree / rel} is not a readable object ({err}); not counted")
            continue
        objects[rel] = Obj(size, hashlib.blake2b(blob, digest_size=16).hexdigest())
    return objects


def read_log(path: Path) -> list[dict]:
    events = []
    try:
        with open(path) as handle:
            for line in handle:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return events


@dataclass
class Build:
    """One measured configuration of one project: its runs, objects and llmcc events."""

    setting: str
    k: int | None
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    objects: dict[str, Obj] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    error: str = ""
    varying: set[str] = field(default_factory=set)  # objects that differed between repetitions

    # The fastest repetition: load from elsewhere on the machine only ever adds time.
    @property
    def wall(self) -> float:
        return min(self.walls) if self.walls else math.nan

    @property
    def cpu(self) -> float:
        return min(self.cpus) if self.cpus else math.nan

    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for event in self.events:
            counts[event.get("outcome", "?")] = counts.get(event.get("outcome", "?"), 0) + 1
        return counts


class Workspace:
    """One project's build tree (always the same path), configured for one setting at a time."""

    def __init__(self, project: Project, pristine: Path, root: Path, logs: Path, jobs: int,
                 clang: str, llmcc: Llmcc) -> None:
        self.project, self.pristine, self.root, self.logs = project, pristine, root, logs
        self.jobs, self.clang, self.llmcc = jobs, clang, llmcc
        self.top = root / "tree"
        self.tree = self.top / project.subdir if project.subdir else self.top
        self.preexisting: set[str] = set()
        self.values: dict[str, str] = {}

    def _expand(self, template: tuple[str, ...]) -> list[str]:
        return [part.format(**self.values) for part in template]

    def configure(self, use_llmcc: bool, cflags: str, env: dict[str, str], log: Path) -> float:
        """A fresh copy of the pristine tree, configured; returns the configure seconds."""
        shutil.rmtree(self.top, ignore_errors=True)
        shutil.copytree(self.pristine, self.top, symlinks=True)
        self.values = {"cc": self.llmcc.cc if use_llmcc else self.clang, "clang": self.clang,
                       "clangxx": cxx_name(self.clang),
                       "launcher": self.llmcc.cc if use_llmcc else "", "cflags": cflags,
                       "jobs": str(self.jobs)}
        seconds = 0.0
        if self.project.configure:
            seconds = run_step(self._expand(self.project.configure), self.tree, env, log).wall
        self.preexisting = object_paths(self.tree)
        return seconds

    def clean(self, env: dict[str, str], log: Path) -> None:
        """`make clean`, then away with any object it left: every build compiles everything."""
        try:
            run_step(self._expand(self.project.clean), self.tree, env, log)
        except BuildFailed:
            pass  # a fresh tree may have nothing to clean; the sweep below is what counts
        for rel in object_paths(self.tree) - self.preexisting:
            (self.tree / rel).unlink()

    def build(self, env: dict[str, str], log: Path) -> tuple[Run, dict[str, Obj]]:
        self.clean(env, log)
        done = run_step(self._expand(self.project.build), self.tree, env, log)
        return done, read_objects(self.tree, self.preexisting)


# --- one project -----------------------------------------------------------------------------

@dataclass
class ProjectResult:
    project: Project
    builds: list[Build] = field(default_factory=list)
    error: str = ""
    configure_seconds: dict[str, float] = field(default_factory=dict)

    def get(self, setting: str, k: int | None = None) -> Build | None:
        for build in self.builds:
            if build.setting == setting and build.k == k:
                return build
        return None


def say(message: str) -> None:
    print(message, flush=True)


def bench_project(project: Project, args: argparse.Namespace, llmcc: Llmcc,
                  cache: Path) -> ProjectResult:
    result = ProjectResult(project)
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    root = args.work / project.name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    try:
        pristine = pristine_tree(project.package, cache)
    except (BuildFailed, OSError, tarfile.TarError) as err:
        result.error = f"cannot fetch or unpack {project.package}: {err}"
        return result
    ws = Workspace(project, pristine, root, logs, args.jobs, args.clang, llmcc)
    name = project.name

    def log_for(setting: str) -> Path:
        path = logs / f"{name}-{setting}.log"
        path.unlink(missing_ok=True)
        return path

    def llmcc_env(cache_dir: Path, k: int, event_log: Path | None) -> dict[str, str]:
        extra = {"LLMCC_CANDIDATES": str(k), "LLMCC_CACHE_DIR": str(cache_dir),
                 **advice(args)}
        if event_log is not None:
            extra["LLMCC_LOG"] = str(event_log)
        return clean_environment(extra)

    def measure(build: Build, env: dict[str, str], log: Path, reps: int, warmup: bool,
                event_log: Path | None = None, empty_cache: Path | None = None) -> None:
        """`reps` timed clean builds (after one untimed one if `warmup`), kept in `build`;
        with `empty_cache`, each starts from an empty llmcc cache there."""
        if warmup:
            ws.build(env, log)
        for _ in range(reps):
            if event_log is not None:
                event_log.unlink(missing_ok=True)
            if empty_cache is not None:
                shutil.rmtree(empty_cache, ignore_errors=True)
                if not args.server_up:
                    stop_fork_servers()
            done, objects = ws.build(env, log)
            build.walls.append(done.wall)
            build.cpus.append(done.cpu)
            if build.objects:
                build.varying |= {rel for rel in set(objects) | set(build.objects)
                                  if objects.get(rel) != build.objects.get(rel)}
            build.objects = objects
            if event_log is not None:
                build.events = read_log(event_log)

    # (a) plain clang -Oz: the reference for sizes and times. A project that does not build
    # with plain clang is skipped.
    plain = Build("plain", None)
    try:
        log = log_for("plain-Oz")
        env = clean_environment({})
        result.configure_seconds["plain-Oz"] = ws.configure(False, "-Oz", env, log)
        measure(plain, env, log, args.reps, warmup=True)
    except BuildFailed as err:
        result.error = f"plain clang build failed: {err}"
        return result
    if not plain.objects:
        result.error = "the plain build produced no object files"
        return result
    result.builds.append(plain)
    say(f"[{name}] plain -Oz: {plain.wall:.2f} s, {len(plain.objects)} objects, "
        f"{sum(o.size for o in plain.objects.values())} bytes text+data")

    # (b) llmcc cold, each k from an empty cache; (c) warm: clean, rebuild with that cache.
    try:
        log = log_for("llmcc-Oz")
        configure_env = llmcc_env(root / "cache-configure", 0, None)
        result.configure_seconds["llmcc-Oz"] = ws.configure(True, "-Oz", configure_env, log)
    except BuildFailed as err:
        result.error = f"configure with llmcc failed: {err}"
        return result
    for k in args.ks:
        cold = Build("cold", k)
        result.builds.append(cold)
        cache_dir = root / f"cache-k{k}"
        events = root / f"events-cold-k{k}.jsonl"
        try:
            measure(cold, llmcc_env(cache_dir, k, events), log, args.cold_reps, warmup=False,
                    event_log=events, empty_cache=cache_dir)
        except BuildFailed as err:
            cold.error = str(err)
            say(f"[{name}] cold k={k}: FAILED {err}")
            continue
        say(f"[{name}] cold k={k}: {cold.wall:.2f} s ({cold.wall / plain.wall:.2f}x plain), "
            f"{sum(o.size for o in cold.objects.values())} bytes, outcomes {cold.outcomes()}")
    for k in args.ks:
        if result.get("cold", k).error:
            continue
        warm = Build("warm", k)
        result.builds.append(warm)
        events = root / f"events-warm-k{k}.jsonl"
        try:
            measure(warm, llmcc_env(root / f"cache-k{k}", k, events), log, args.reps,
                    warmup=False, event_log=events)
        except BuildFailed as err:
            warm.error = str(err)
            say(f"[{name}] warm k={k}: FAILED {err}")
            continue
        say(f"[{name}] warm k={k}: {warm.wall:.2f} s ({warm.wall / plain.wall:.2f}x plain), "
            f"outcomes {warm.outcomes()}")

    # (d) passthrough: -O0 is not intercepted, so llmcc only classifies and execs clang.
    plain0, ours0 = Build("plain-O0", None), Build("llmcc-O0", None)
    result.builds += [plain0, ours0]
    try:
        log = log_for("plain-O0")
        env = clean_environment({})
        result.configure_seconds["plain-O0"] = ws.configure(False, "-O0", env, log)
        measure(plain0, env, log, args.reps, warmup=True)
    except BuildFailed as err:
        plain0.error = str(err)
    if not plain0.error:
        try:
            log = log_for("llmcc-O0")
            events = root / "events-O0.jsonl"
            env = llmcc_env(root / "cache-O0", DEFAULT_K, events)
            result.configure_seconds["llmcc-O0"] = ws.configure(True, "-O0", env, log)
            measure(ours0, env, log, args.reps, warmup=True, event_log=events)
        except BuildFailed as err:
            ours0.error = str(err)
    if plain0.error or ours0.error:
        say(f"[{name}] -O0 builds: FAILED {plain0.error or ours0.error}")
    else:
        calls = len(ours0.events)
        say(f"[{name}] -O0: plain {plain0.wall:.2f} s, llmcc {ours0.wall:.2f} s, "
            f"{calls} llmcc calls")
    shutil.rmtree(ws.top, ignore_errors=True)
    return result


# --- main ------------------------------------------------------------------------------------

def advice(args: argparse.Namespace) -> dict[str, str]:
    """The advisor settings a run asks for (--advisor, --min-gain); llmcc's defaults otherwise."""
    asked = {"LLMCC_ADVISOR": args.advisor, "LLMCC_MIN_GAIN": args.min_gain}
    return {name: value for name, value in asked.items() if value is not None}


def _identity(llmcc: Llmcc, args: argparse.Namespace) -> str:
    env = clean_environment(advice(args))
    done = subprocess.run([*llmcc.ctl, "id"], capture_output=True, text=True, env=env,
                          check=False)
    return done.stdout.strip() or f"(llmcc-ctl id failed: {done.stderr.strip()[-300:]})"


def _advisor_lists(llmcc: Llmcc, advisor: str | None) -> int | None:
    if advisor != "popular":
        return None
    try:
        with open(os.path.join(llmcc.package_dir, "advisor", "popular.json")) as handle:
            return len(json.load(handle)["lists"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"need non-negative integers: {text!r}")
    return sorted(dict.fromkeys(values))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Build real projects with plain clang-19 -Oz and with llmcc; compare sizes "
                    "and build times.")
    parser.add_argument("--projects", help="comma-separated, from: " + ", ".join(PROJECTS)
                        + f" (default: {','.join(DEFAULT_PROJECTS)}; cxx: "
                        f"{','.join(CXX_PROJECTS)})")
    parser.add_argument("--ks", type=_int_list, help="candidate counts (default 1,3,5,10)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {','.join(QUICK_PROJECTS)}, k=1,3, one timed build "
                             "each (explicit --projects/--ks/--reps still win)")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="results (bench/out)")
    parser.add_argument("--work", type=Path, default=None,
                        help="build trees and llmcc caches (~/.cache/llmcc-bench/work)")
    parser.add_argument("--reps", type=int, default=None,
                        help="timed clean builds for plain, warm and -O0; the fastest counts "
                             "(default 3, --quick 1)")
    parser.add_argument("--cold-reps", type=int, default=None,
                        help="timed cold builds per k, each from an empty cache; the fastest "
                             "counts (default 2, --quick 1)")
    parser.add_argument("--server-up", action="store_true",
                        help="cold builds find the fork server the build before left running "
                             "(a user's later builds); default: each starts and pays for one")
    parser.add_argument("--jobs", type=int, default=2, help="make -j (default 2)")
    parser.add_argument("--advisor", help="LLMCC_ADVISOR (default: llmcc's own default)")
    parser.add_argument("--min-gain", help="LLMCC_MIN_GAIN (default: llmcc's own default)")
    parser.add_argument("--clang", default="clang-19", help="the plain compiler (clang-19)")
    parser.add_argument("--no-pin", action="store_true",
                        help="use the installed llmcc as is, instead of a frozen copy of it")
    args = parser.parse_args(argv)
    names = (args.projects.split(",") if args.projects else
             list(QUICK_PROJECTS if args.quick else DEFAULT_PROJECTS))
    if names == ["cxx"]:
        names = list(CXX_PROJECTS)
    unknown = [n for n in names if n not in PROJECTS]
    if unknown:
        parser.error(f"unknown project(s) {', '.join(unknown)}; known: {', '.join(PROJECTS)}")
    args.project_list = [PROJECTS[n] for n in dict.fromkeys(names)]
    if args.ks is None:
        args.ks = [1, 3] if args.quick else [1, 3, 5, 10]
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    if args.cold_reps is None:
        args.cold_reps = 1 if args.quick else 2
    if min(args.reps, args.cold_reps, args.jobs) < 1:
        parser.error("--reps, --cold-reps and --jobs must be at least 1")
    args.out = args.out.resolve()
    args.work = (args.work or _cache_root() / "work").resolve()
    clang = shutil.which(args.clang)
    if clang is None:
        parser.error(f"{args.clang} is not on PATH")
    args.clang = clang
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    cache = _cache_root()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    RUNTIME_DIR.mkdir(mode=0o700, exist_ok=True)
    llmcc = installed_llmcc() if args.no_pin else pin_llmcc(args.work / "llmcc-pinned")
    identity = _identity(llmcc, args)
    lists = _advisor_lists(llmcc, args.advisor)
    advisor_id = next((part.split("=", 1)[1] for part in identity.split()
                       if part.startswith("advisor=")), "?")
    say(f"llmcc: {identity}")
    say(f"llmcc package: {llmcc.source}" + (f" (frozen copy in {llmcc.package_dir})"
                                            if llmcc.pinned else " (installed, not pinned)")
        + (f"; popular.json holds {lists} pass lists" if lists is not None else ""))
    say(f"projects: {', '.join(p.name for p in args.project_list)}; k: "
        f"{','.join(map(str, args.ks))}; make -j{args.jobs}; fastest of {args.reps} timed "
        f"build(s) per plain/warm/-O0 setting, of {args.cold_reps} per cold k")

    results: list[ProjectResult] = []
    for project in args.project_list:
        say(f"[{project.name}] {project.why}")
        try:
            result = bench_project(project, args, llmcc, cache)
        except (OSError, subprocess.SubprocessError) as err:
            result = ProjectResult(project, error=f"{type(err).__name__}: {err}")
        finally:
            stop_fork_servers()
        if result.error:
            say(f"[{project.name}] SKIPPED: {result.error}")
        results.append(result)
        write_csv(args.out / "results.csv", results, advisor_id)  # partial results survive

    rows = table_rows(results, args.ks)
    seen = sorted({e.get("advisor") for r in results for b in r.builds for e in b.events
                   if e.get("advisor")})
    notes = []
    for r in results:
        if r.error:
            notes.append(f"- **{r.project.name} skipped**: {r.error}")
        for b in r.builds:
            if b.error:
                label = b.setting if b.k is None else f"{b.setting} k={b.k}"
                notes.append(f"- {r.project.name} {label}: {b.error}")
            if b.varying:
                label = b.setting if b.k is None else f"{b.setting} k={b.k}"
                notes.append(f"- **{r.project.name} {label}: objects differ between "
                             f"repetitions**: {', '.join(sorted(b.varying)[:5])}")
    if len(seen) > 1 or (seen and seen != [advisor_id]):
        notes.append(f"- the advisor identity changed during the run: {', '.join(seen)}")
    if lists is not None and any(k > lists for k in args.ks):
        notes.append(f"- popular.json holds only {lists} pass list(s): any k above {lists} "
                     f"tries the same lists as k={lists}")
    regressions = sum(row.size.regressions for row in rows if row.project != "all")
    mismatches = [f"{row.project} k={row.k}" for row in rows
                  if row.warm_identical == "NO" and row.project != "all"]
    if regressions:
        notes.append(f"- **{regressions} objects larger than plain clang's** (see objects.csv)")
    if mismatches:
        notes.append(f"- **warm objects differ from cold ones**: {', '.join(mismatches)}")
    elapsed = time.time() - started
    title = (f"llmcc vs clang-19 -Oz, {len([r for r in results if not r.error])} projects, "
             f"make -j{args.jobs} ({advisor_id})")
    plot_error = plot(args.out / "size_time.png", rows, title)
    if plot_error:
        notes.append(f"- {plot_error}")

    table = markdown_table(rows)
    summary = "\n".join([
        "# llmcc build benchmark", "",
        f"- llmcc: `{identity}`" + (f" ({lists} pass list(s) in popular.json)"
                                    if lists is not None else ""),
        f"- llmcc package: `{llmcc.source}`" + (" (a frozen copy, made when the run began)"
                                                 if llmcc.pinned else ""),
        f"- machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}",
        (f"- builds: make -j{args.jobs}; each time is the fastest of {args.reps} clean builds "
         f"(plain, warm, -O0) or of {args.cold_reps} (cold, each from an empty cache"
         + (", the fork server left running by the build before" if args.server_up
            else ", each starting its own fork server") + ")"),
        (f"- started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}, "
        f"took {elapsed / 60:.1f} min"), "",
        "## Size and build time", "",
        ("Sizes are text+data (llvm-size) summed over the object files both builds produced; "
        "`geomean TU saved` is 1 - geomean(llmcc/plain) over objects; `regressions` counts "
        "objects larger than plain clang's (must be 0). Times are whole-build wall-clock ratios "
        "to plain clang -Oz. Passthrough: extra wall ms per llmcc call in a -O0 build "
        "(not intercepted), i.e. (llmcc build - plain build) / calls under make -j."), "",
        table, "",
        "## Passthrough and configure", "", details_table(results), "",
        "## Where a cold build's time goes", "",
        ("Seconds of each stage of llmcc's compiles (the event log's `stages`: wall-clock "
         "time, mostly spent waiting on clang and opt; `startup` is the CPU Python and llmcc "
         "took before the compile began) summed over the last cold build of every project, "
         "divided by plain clang's build CPU seconds. `sum` should come near the cold/plain "
         "CPU ratio; the difference is make, the shell, and the CPU of the tools themselves "
         "beyond their wall time."), "",
        stages_table(results, args.ks), "",
        "## Checks", "", checks_table(rows), "",
        "## Notes", "", *(notes or ["- none"]), "",
    ])
    (args.out / "summary.md").write_text(summary)
    write_csv(args.out / "results.csv", results, advisor_id)
    write_objects_csv(args.out / "objects.csv", results, args.ks)
    say("")
    say(table)
    say("")
    say(details_table(results))
    if notes:
        say("")
        say("\n".join(notes))
    say(f"\nwrote {args.out}/summary.md, results.csv, objects.csv"
        + ("" if plot_error else ", size_time.png") + f" ({elapsed / 60:.1f} min)")
    return 1 if regressions or mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
