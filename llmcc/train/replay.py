"""Record the TUs of code no llmcc build ran: each compile of a compilation database
(`compile_commands.json`, as CMake, Bear or Meson write it), or else each C/C++ source file of a
directory compiled alone, is run again through llmcc with LLMCC_RECORD, so `llmcc-ctl eval DIR`
can label and score any project (README "Your own model").

A compile is replayed as the database gives it, in its directory, with three changes: the real
compiler is llmcc's configured clang (llmcc runs it), its object and dependency files go to a
scratch directory (the project's own build outputs are never touched), and a compile not at
-Os or -Oz gets -Oz last (llmcc only steps in for size-optimised compiles; the last -O wins).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

DATABASE = "compile_commands.json"
CXX_SUFFIXES = (".cc", ".cp", ".cpp", ".cxx", ".c++", ".C", ".CPP")
SOURCE_SUFFIXES = (".c", *CXX_SUFFIXES)
# compiler launchers a database may name before the compiler (llmcc itself among them)
LAUNCHERS = ("ccache", "sccache", "distcc", "icecc", "llmcc", "llmcc++")
# options naming a file the compile writes (or a dependency file's target), the name apart or
# joined: the replay writes none of the project's files
OUTPUT_OPTIONS = ("-o", "-MF", "-MT", "-MQ")
DROPPED_FLAGS = ("-MD", "-MMD", "-MP")


class Compile:
    """One compile: its directory, its arguments (the compiler first) and its language (by the
    compiler's name or the file's suffix)."""

    def __init__(self, directory: str, arguments: list[str], file: str) -> None:
        while len(arguments) > 1 and os.path.basename(arguments[0]) in LAUNCHERS:
            arguments = arguments[1:]
        self.directory, self.arguments = directory, arguments
        compiler = os.path.basename(arguments[0]) if arguments else ""
        self.cxx = "++" in compiler or file.endswith(CXX_SUFFIXES)


def from_database(path: str) -> list[Compile]:
    """The compiles a compilation database lists; ValueError if it is not one."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        entries = json.loads(text)
        if not isinstance(entries, list):
            raise TypeError("not a JSON list")
        return [Compile(entry["directory"],
                        list(entry.get("arguments") or shlex.split(entry["command"])),
                        entry["file"]) for entry in entries]
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a compilation database (a list of compiles, each "
                         f"with directory, file, and command or arguments): {err}") from None


def from_sources(directory: str) -> list[Compile]:
    """Every C and C++ source file under `directory`, compiled alone at -Oz where it lies."""
    compiles = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.endswith(SOURCE_SUFFIXES):
                compiles.append(Compile(root, ["clang", "-Oz", "-c", name], name))
    return compiles


def find(directory: str) -> list[Compile]:
    """The compiles of `directory`: its compilation database's, else its sources'."""
    database = os.path.join(directory, DATABASE)
    return from_database(database) if os.path.exists(database) else from_sources(directory)


def replayed(arguments: list[str], scratch: str) -> list[str]:
    """The compiler's arguments (without the compiler) as the replay runs them."""
    out, skip = [], False
    for arg in arguments[1:]:
        if skip:
            skip = False
            continue
        if arg in OUTPUT_OPTIONS or arg == "--serialize-diagnostics":
            skip = True
        elif arg not in DROPPED_FLAGS and not arg.startswith(OUTPUT_OPTIONS):
            out.append(arg)
    out += ["-o", os.path.join(scratch, "out.o")]
    levels = [arg for arg in out if arg.startswith("-O")]
    if not levels or levels[-1] not in ("-Os", "-Oz"):
        out.append("-Oz")
    return out


def _command(cxx: bool) -> str:
    """llmcc's own command for the language, beside this Python (a venv's) or on PATH."""
    name = "llmcc++" if cxx else "llmcc"
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.path.exists(beside) else shutil.which(name) or name


def replay(compiles: list[Compile], records: str, environ: dict[str, str]) -> dict[str, int]:
    """Run each compile through llmcc recording into `records`; how many compiles there were,
    how many failed, and how many TUs `records` holds after."""
    os.makedirs(records, exist_ok=True)
    for name in os.listdir(records):  # a TU recorded by an earlier replay may be gone now
        if name.endswith((".bc", ".json")):
            os.unlink(os.path.join(records, name))
    failed = 0
    with tempfile.TemporaryDirectory(prefix="llmcc-replay-") as scratch:
        env = {**environ, "LLMCC_RECORD": os.path.abspath(records), "LLMCC_CANDIDATES": "0",
               "LLMCC_ADVISOR": "none", "LLMCC_CACHE_DIR": os.path.join(scratch, "cache")}
        env.pop("LLMCC_LOG", None)
        for compile_ in compiles:
            cmd = [_command(compile_.cxx), *replayed(compile_.arguments, scratch)]
            try:
                done = subprocess.run(cmd, cwd=compile_.directory, env=env, check=False,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                failed += done.returncode != 0
            except OSError:  # its directory is gone
                failed += 1
    recorded = sum(name.endswith(".bc") for name in os.listdir(records))
    return {"compiles": len(compiles), "failed": failed, "recorded": recorded}
