"""The PATH shims in shims/bin, against the real clang-19.

A shim with a generic name (cc, c++, gcc, g++) runs the configured clang, or its C++ driver,
for every call, never the next `cc` on PATH (on Debian that is gcc, whose pipeline llmcc does
not improve). A shim named after a clang runs the next real program of that name. Every
message names the program that runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import LLVM_BIN, REPO, SIZE_C, SIZE_H, log_outcomes, run, script

from llmcc.objfile import read_object
from llmcc.toolchain import cxx_name, opt_beside

SHIM_DIR = os.path.join(REPO, "shims", "bin")
GENERIC = {"cc": "c", "gcc": "c", "c++": "c++", "g++": "c++"}
CLANG_NAMED = ["clang", "clang++", "clang-19", "clang++-19"]

SHAPES_CC = """#include <vector>
struct Shape {
    explicit Shape(int side) : side(side) {}
    virtual ~Shape() = default;
    virtual int area() const { return side * side; }
    int side;
};
int total_area(int n) {
    std::vector<Shape> shapes;
    for (int i = 0; i < n; i++) shapes.emplace_back(i);
    int sum = 0, unused;
    for (const Shape &s : shapes) sum += s.area();
    return sum;
}
"""

SOURCES = {"c": "size.c", "c++": "shapes.cc"}


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "src"
    root.mkdir()
    (root / "size.h").write_text(SIZE_H)
    (root / "size.c").write_text(SIZE_C)
    (root / "shapes.cc").write_text(SHAPES_CC)
    (root / "main.c").write_text("int main(void) { return 0; }\n")
    return root


@pytest.fixture
def stand_ins(tmp_path) -> Path:
    """cc, c++, gcc and g++ that only record that they ran: they must never run."""
    directory = tmp_path / "stand-ins"
    directory.mkdir()
    for name in GENERIC:
        script(directory / name, f'echo "$0 $*" >> {tmp_path / "stand-ins.log"}\nexit 97\n')
    return directory


def _stand_in_calls(stand_ins: Path) -> str:
    log = stand_ins.parent / "stand-ins.log"
    return log.read_text() if log.exists() else ""


def _plain_path(env: dict[str, str]) -> str:
    return os.pathsep.join(d for d in env["PATH"].split(os.pathsep) if d != SHIM_DIR)


@pytest.fixture(params=["default", "setting", "llvm bin first"])
def shimmed_env(request, env, stand_ins) -> tuple[dict[str, str], str]:
    """(environment with the shims first and the stand-ins next, the C clang it should run):
    clang-19 on PATH by default, or the `clang` setting; or clang-19 of LLVM's own directory,
    which has no clang++-19 beside it (its C++ driver is named clang++ there)."""
    env = dict(env)
    first = [LLVM_BIN] if request.param == "llvm bin first" else []
    env["PATH"] = os.pathsep.join([SHIM_DIR, str(stand_ins), *first, env["PATH"]])
    if request.param == "setting":
        expected = env["LLMCC_CLANG"] = os.path.join(LLVM_BIN, "clang")
    else:
        env.pop("LLMCC_CLANG")
        expected = shutil.which("clang-19", path=_plain_path(env))
    if first:  # what this case is for: a clang-19 with no clang++-19 beside it
        assert expected == os.path.join(LLVM_BIN, "clang-19")
        assert not os.path.exists(os.path.join(LLVM_BIN, "clang++-19"))
    assert expected is not None
    return env, expected


def test_the_cxx_driver_is_the_same_clang_under_the_name_that_exists():
    """clang-19 -> clang++-19 where both exist (/usr/bin on Debian); in LLVM's own directory,
    which has clang-19 and clang++ (links to one clang) but no clang++-19, clang++."""
    assert cxx_name(os.path.join(LLVM_BIN, "clang-19")) == os.path.join(LLVM_BIN, "clang++")
    assert cxx_name(os.path.join(LLVM_BIN, "clang")) == os.path.join(LLVM_BIN, "clang++")
    usr_bin = shutil.which("clang-19", path="/usr/bin")
    if usr_bin is not None:
        assert cxx_name(usr_bin) == "/usr/bin/clang++-19"
    assert cxx_name("/usr/bin/cc") == "/usr/bin/c++"


def _run_bounded(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A shim that found itself instead of clang would loop forever: make that a failure."""
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, timeout=60, check=False)


def _driver(clang: str, language: str) -> str:
    return cxx_name(clang) if language == "c++" else clang


# --- cc, c++, gcc, g++ ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(GENERIC))
def test_generic_shim_compiles_with_the_configured_clang(tree, shimmed_env, stand_ins, name):
    env, clang = shimmed_env
    language = GENERIC[name]
    args = ["-Oz", "-Wall", "-c", SOURCES[language], "-o", "x.o"]
    plain = run([_driver(clang, language), *args], cwd=tree, env=env)
    assert plain.returncode == 0 and b"unused variable 'unused'" in plain.stderr
    plain_object = (tree / "x.o").read_bytes()
    (tree / "x.o").unlink()
    shimmed = _run_bounded([name, *args], tree, env)  # found through PATH: the shim
    assert shimmed.returncode == 0, shimmed.stderr
    assert shimmed.stderr.decode() == plain.stderr.decode()
    plain_info, tuned_info = read_object(plain_object), read_object((tree / "x.o").read_bytes())
    assert tuned_info.size <= plain_info.size
    assert tuned_info.defined == plain_info.defined
    assert log_outcomes(env) == ["miss"]
    assert _stand_in_calls(stand_ins) == ""


@pytest.mark.parametrize("name", list(GENERIC))
def test_generic_shim_passes_calls_through_to_the_configured_clang(tree, shimmed_env, stand_ins,
                                                                   name):
    """`cc --version`, a link, an error: all from clang, which names itself as clang does."""
    env, clang = shimmed_env
    program = _driver(clang, GENERIC[name])
    for args in (["--version"], ["-c", "missing.c"]):
        shimmed = _run_bounded([name, *args], tree, env)
        plain = run([program, *args], cwd=tree, env=env)
        assert (shimmed.returncode, shimmed.stdout, shimmed.stderr.decode()) == \
            (plain.returncode, plain.stdout, plain.stderr.decode())
    assert f"{os.path.basename(program)}: error: no such file" in plain.stderr.decode()
    linked = _run_bounded([name, "main.c", "-o", "main"], tree, env)
    assert linked.returncode == 0, linked.stderr
    assert b"clang version 19" in (tree / "main").read_bytes()  # clang's .comment
    assert run([str(tree / "main")], cwd=tree).returncode == 0
    assert log_outcomes(env) == ["passthrough"] * 3
    assert _stand_in_calls(stand_ins) == ""


def test_generic_shim_warning_names_the_clang_that_compiles(tree, shimmed_env, stand_ins):
    env, clang = shimmed_env
    env["LLMCC_OPT"] = "/nonexistent/opt"
    shimmed = _run_bounded(["cc", "-Oz", "-c", "size.c"], tree, env)
    assert shimmed.returncode == 0
    (line,) = [x for x in shimmed.stderr.decode().splitlines() if x.startswith("llmcc:")]
    assert line.startswith("llmcc: warning: opt was not found at /nonexistent/opt")
    assert line.endswith(f"; compiling with plain {os.path.basename(clang)}")
    assert log_outcomes(env) == ["fallback"]
    assert _stand_in_calls(stand_ins) == ""


def test_generic_shim_with_a_broken_config_names_the_clang_it_passes_to(tree, env, stand_ins):
    """No settings at all, so the default clang-19 on PATH; the message names its C++ driver."""
    env.pop("LLMCC_CLANG")
    env["PATH"] = os.pathsep.join([SHIM_DIR, str(stand_ins), env["PATH"]])
    clang = shutil.which("clang-19", path=_plain_path(env))
    config = tree.parent / "broken.toml"
    config.write_text("candidates = [not toml\n")
    env["LLMCC_CONFIG"] = str(config)
    shimmed = _run_bounded(["c++", "-Oz", "-c", "shapes.cc"], tree, env)
    assert shimmed.returncode == 0 and (tree / "shapes.o").exists()
    (line,) = [x for x in shimmed.stderr.decode().splitlines() if x.startswith("llmcc:")]
    assert str(config) in line
    assert line.endswith(f"; passing calls to plain {os.path.basename(cxx_name(clang))}")
    assert _stand_in_calls(stand_ins) == ""


def test_warning_names_a_foreign_compiler_that_compiles(tree, tmp_path, clang, llmcc, env):
    """The launcher form with a compiler that is not clang: the warning says which one runs."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    gcc = script(foreign / "gcc", f"""\
if [ "$1" = --version ]; then echo 'gcc (Debian 12.2.0-14) 12.2.0'; exit 0; fi
exec {clang} "$@"
""")
    done = run([llmcc, gcc, "-Oz", "-c", "size.c"], cwd=tree, env=env)
    assert done.returncode == 0 and (tree / "size.o").exists()
    (line,) = [x for x in done.stderr.decode().splitlines() if x.startswith("llmcc:")]
    assert "is not clang" in line and line.endswith("; compiling with plain gcc")
    assert log_outcomes(env) == ["fallback"]


# --- clang, clang-19, clang++, clang++-19 --------------------------------------------------------

def test_path_shim_runs_the_real_clang_without_recursion(tree, clang, env):
    real = shutil.which("clang-19", path=_plain_path(env))
    assert real is not None
    env.pop("LLMCC_CLANG")
    env["PATH"] = os.pathsep.join([SHIM_DIR, env["PATH"], os.path.dirname(real)])
    args = ["-Oz", "-Wall", "-c", "size.c"]
    shimmed = _run_bounded(["clang-19", *args], tree, env)  # found through PATH: the shim
    assert shimmed.returncode == 0, shimmed.stderr
    assert log_outcomes(env) == ["miss"]
    tuned = (tree / "size.o").read_bytes()
    (tree / "size.o").unlink()
    plain = run([real, *args], cwd=tree, env=env)
    assert shimmed.stderr.decode() == plain.stderr.decode()
    plain_info, tuned_info = read_object((tree / "size.o").read_bytes()), read_object(tuned)
    assert tuned_info.size <= plain_info.size
    assert tuned_info.defined == plain_info.defined


def test_path_shim_passthrough_reaches_the_real_clang(tree, env):
    env.pop("LLMCC_CLANG")
    env["PATH"] = os.pathsep.join([SHIM_DIR, env["PATH"], "/usr/bin"])
    shimmed = _run_bounded(["clang-19", "--version"], tree, env)
    plain = run(["/usr/bin/clang-19", "--version"], cwd=tree, env=env)
    assert shimmed.returncode == 0
    assert shimmed.stdout == plain.stdout
    assert log_outcomes(env) == ["passthrough"]


def test_clang_named_shim_runs_the_next_program_of_its_name(tree, tmp_path, clang, env):
    """Not the `clang` setting: a build that names clang-19 gets the next clang-19 on PATH."""
    wrapped = tmp_path / "wrapped"
    wrapped.mkdir()
    calls = tmp_path / "calls.log"
    script(wrapped / "clang-19", f'echo "$*" >> {calls}\nexec {clang} "$@"\n')
    (wrapped / "opt").symlink_to(opt_beside(clang))
    env["LLMCC_CLANG"] = os.path.join(LLVM_BIN, "clang")  # not what this shim runs
    env["PATH"] = os.pathsep.join([SHIM_DIR, str(wrapped), env["PATH"]])
    shimmed = _run_bounded(["clang-19", "-Oz", "-c", "size.c"], tree, env)
    assert shimmed.returncode == 0, shimmed.stderr
    assert shimmed.stderr == b""
    assert log_outcomes(env) == ["miss"]
    assert "-c size.c" in calls.read_text()  # the frontend ran through the next clang-19


# --- the shim directory --------------------------------------------------------------------------

def test_shim_directory_holds_the_generic_and_clang_names():
    names = sorted(os.listdir(SHIM_DIR))
    assert names == sorted([*GENERIC, *CLANG_NAMED])
    for name in names:
        assert os.readlink(os.path.join(SHIM_DIR, name)) == "../llmcc-shim"
