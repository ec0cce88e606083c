"""C++ code no advisor saw: Debian C++ projects outside the training allowlist, scored by
`llmcc-ctl eval` as a user would score their own project.

    .venv/bin/python bench/unseen_cxx.py [--projects box2d,double-conversion,...]
        [--work DIR] [-- EVAL ARGS, e.g. --forest FILE --seconds 40]

Each project's upstream tree (fetched and unpacked as bench/build.py does) is configured with
CMake as a size-optimised release (MinSizeRel, its flags made `-Oz -DNDEBUG`), writing a
compilation database (no build: eval replays every compile). The databases are merged into
one, in `WORK/projects/compile_commands.json`, and
`llmcc-ctl eval WORK/projects --records WORK/records EVAL ARGS` replays, records, labels and
scores them: one table for all their TUs. The records and their labels are kept, so scoring
another advisor (`-- --forest other.bin`) replays the compiles but labels nothing again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from build import CXX_OPTIONS as PROJECTS
from build import _cache_root, pristine_tree

CTL = os.path.join(os.path.dirname(sys.executable), "llmcc-ctl")


def database(package: str, work: Path) -> list[dict]:
    """The compiles of `package`'s library as CMake configures them for a small release."""
    tree = work / "trees" / package
    if not tree.exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(pristine_tree(package, _cache_root()), tree)
    build = tree / "llmcc-build"
    subprocess.run(["cmake", "--no-warn-unused-cli", "-S", str(tree), "-B", str(build),
                    "-DCMAKE_BUILD_TYPE=MinSizeRel",
                    "-DCMAKE_CXX_COMPILER=clang++-19", "-DCMAKE_C_COMPILER=clang-19",
                    "-DCMAKE_CXX_FLAGS_MINSIZEREL=-Oz -DNDEBUG",
                    "-DCMAKE_C_FLAGS_MINSIZEREL=-Oz -DNDEBUG",
                    "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", *PROJECTS[package]],
                   check=True, stdout=subprocess.DEVNULL)
    with open(build / "compile_commands.json", encoding="utf-8") as handle:
        return json.load(handle)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", default=",".join(PROJECTS))
    parser.add_argument("--work", type=Path, default=_cache_root() / "unseen-cxx")
    args, eval_args = parser.parse_known_args()
    eval_args = [arg for arg in eval_args if arg != "--"]
    projects = args.work / "projects"
    projects.mkdir(parents=True, exist_ok=True)
    compiles = [entry for package in args.projects.split(",")
                for entry in database(package, args.work)]
    with open(projects / "compile_commands.json", "w", encoding="utf-8") as handle:
        json.dump(compiles, handle, indent=1)
    return subprocess.run([CTL, "eval", str(projects), "--records", str(args.work / "records"),
                           *eval_args], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
