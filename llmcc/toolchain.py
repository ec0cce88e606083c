"""Finding and running the real clang and opt.

The search for the real compiler never returns llmcc itself or one of its shims, so a shim
directory early on PATH cannot make a call recurse.
"""

from __future__ import annotations

import os

DEFAULT_CLANG = "clang-19"
LLVM_BIN = "/usr/lib/llvm-19/bin"


class ToolchainError(Exception):
    """The real clang or opt is missing, unusable, or of the wrong version."""


class StepFailed(Exception):
    """One opt or codegen run crashed, failed, or ran past its time limit."""


class TimedOut(StepFailed):
    """A step ran past its time limit: as much a fact about the machine's load at the time as
    about the input, so never recorded as the input's."""


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_program(name: str, path_env: str, skip: frozenset[str] = frozenset()) -> str | None:
    """First `name` on `path_env` whose real path is not in `skip` (llmcc and its shims)."""
    if os.sep in name:
        return name if _is_executable(name) else None
    for directory in path_env.split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if _is_executable(candidate) and os.path.realpath(candidate) not in skip:
            return candidate
    return None


def is_clang_name(name: str) -> bool:
    """clang, clang-19, clang++: a name that asks for one clang, not for "the C compiler".

    A build that runs such a name chose its compiler, so a shim of that name runs it; cc, c++,
    gcc and g++ only ask for the system's compiler, which for llmcc is the configured clang.
    """
    return name.startswith("clang")


def cxx_name(clang: str) -> str:
    """The C++ driver that belongs to a C driver: clang-19 -> clang++-19, cc -> c++.

    Where that name does not exist beside it, a `clang++` name beside it or beside its target
    that runs the same program: LLVM's own directory (/usr/lib/llvm-19/bin on Debian, often
    first on PATH) has clang-19 but no clang++-19, only clang++, all links to one clang."""
    import re

    def cxx(head: str, name: str) -> str:
        return os.path.join(head, re.sub(r"clang(?!\+\+)", "clang++", name, count=1))

    head, name = os.path.split(clang)
    if name == "cc":
        return os.path.join(head, "c++")
    named = cxx(head, name)
    if _is_executable(named) or not _is_executable(clang):
        return named
    real = os.path.realpath(clang)
    for candidate in (cxx(*os.path.split(real)), os.path.join(head, "clang++"),
                      os.path.join(os.path.dirname(real), "clang++")):
        if _is_executable(candidate) and os.path.realpath(candidate) == real:
            return candidate
    return named


def default_clang(setting: str, path_env: str, skip: frozenset[str]) -> str:
    """The real C driver: the `clang` setting, else clang-19 on PATH, else LLVM 19's own."""
    if setting:
        found = find_program(setting, path_env, skip)
        if found is None:
            raise ToolchainError(f"the configured clang {setting!r} was not found")
        return found
    found = find_program(DEFAULT_CLANG, path_env, skip)
    if found is None and _is_executable(os.path.join(LLVM_BIN, "clang")):
        found = os.path.join(LLVM_BIN, "clang")
    if found is None:
        raise ToolchainError(
            "clang-19 was not found on PATH or in /usr/lib/llvm-19/bin "
            "(install clang-19 llvm-19, or set LLMCC_CLANG)")
    return found


class Tools:
    """The real programs one intercepted compile uses; `version` is clang's full `--version`
    first line, part of every cache key. (A plain class: this module is on the passthrough path,
    where importing collections for a namedtuple would cost every call ~3 ms.)"""

    __slots__ = ("clang", "opt", "version")

    def __init__(self, clang: str, opt: str, version: str) -> None:
        self.clang, self.opt, self.version = clang, opt, version

    def as_dict(self) -> dict[str, str]:
        return {"clang": self.clang, "opt": self.opt, "version": self.version}


def llvm_version(text: str) -> str | None:
    import re

    match = re.search(r"(?:clang|LLVM) version (\d+\.\d+\.\d+)", text)
    return match.group(1) if match else None


def _version_text(program: str, timeout: float) -> str:
    import subprocess

    try:
        done = subprocess.run([program, "--version"], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ToolchainError(f"cannot run {program} --version: {err}") from None
    return done.stdout


def opt_beside(clang: str) -> str:
    """The opt of clang's own LLVM installation (where Debian puts both: /usr/lib/llvm-19/bin)."""
    return os.path.join(os.path.dirname(os.path.realpath(clang)), "opt")


def llvm_dis_beside(tool: str) -> str:
    """llvm-dis of the LLVM installation `tool` (clang or opt, through symlinks) comes from."""
    return os.path.join(os.path.dirname(opt_beside(tool)), "llvm-dis")


def find_llvm_dis(*tools: str) -> str:
    """The first llvm-dis beside one of `tools` (the opt in use, then clang: either may be a
    wrapper script with no LLVM beside it); else the first place looked, which an error names."""
    places = [llvm_dis_beside(tool) for tool in tools]
    return next((p for p in places if os.access(p, os.X_OK)), places[0])


def check_tools(clang: str, opt_setting: str, timeout: float = 10.0) -> Tools:
    """Confirm clang is clang and opt is the same LLVM release; say clearly what is wrong."""
    clang_text = _version_text(clang, timeout)
    clang_version = llvm_version(clang_text)
    if clang_version is None or "clang version" not in clang_text:
        raise ToolchainError(f"{clang} is not clang (its --version says "
                             f"{clang_text.splitlines()[:1]})")
    opt = opt_setting or opt_beside(clang)
    if not _is_executable(opt):
        raise ToolchainError(f"opt was not found at {opt} (set LLMCC_OPT)")
    opt_version = llvm_version(_version_text(opt, timeout))
    if opt_version != clang_version:
        raise ToolchainError(f"{opt} is LLVM {opt_version} but {clang} is clang {clang_version}: "
                             "they must be the same release (set LLMCC_OPT)")
    return Tools(clang=clang, opt=opt, version=clang_text.splitlines()[0])


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None,
        stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    """Run a step; a crash or time-out is StepFailed, a plain non-zero exit is returned."""
    import subprocess

    try:
        done = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, env=env,
                              check=False)
    except subprocess.TimeoutExpired:
        raise TimedOut(f"{os.path.basename(cmd[0])} ran past {timeout:g}s") from None
    except OSError as err:
        raise StepFailed(f"cannot run {cmd[0]}: {err}") from None
    if done.returncode == -2:  # SIGINT reached the child first: the user pressed Ctrl-C
        raise KeyboardInterrupt
    if done.returncode < 0:
        raise StepFailed(f"{os.path.basename(cmd[0])} died of signal {-done.returncode}")
    return done.returncode, done.stdout, done.stderr
