"""Could a cold compile generate code only for the functions a list changed?

    .venv/bin/python bench/unchanged_functions.py DIR [--k 3]    (DIR: LLMCC_RECORD wrote it)

Code generation is most of what a tried list costs (docs/benchmark.md, "Where a cold build's
time goes"), and a compile has already generated clang -Oz's object. A function that a list
leaves exactly as -Oz's pipeline leaves it gets the same machine code (whatever the rest of the
module), so only the other functions would need generating for the list's size to be known.
For each recorded TU this applies `default<Oz>` and the shipped forest's lists for it (at most
k, as a compile chooses them) with opt, and counts the functions of each list's module whose
IR is the same as in the -Oz module (metadata and attribute group numbers aside), and their
share of the module's instruction lines: at most that share of a list's code generation could
be skipped. Prints one line.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys

from llmcc.advisor.forest import FOREST_FILE, Forest
from llmcc.passes import to_pipeline
from llmcc.summary import summarize_ir
from llmcc.toolchain import check_tools, default_clang

DEFINITION = re.compile(r'^define [^@]*@("[^"]*"|[-\w.$]+)\(.*?^}', re.MULTILINE | re.DOTALL)
NUMBERED = re.compile(r"(![\w.]+|#\d+)")
MIN_GAIN = 0.001  # the min_gain setting's default, 0.1%, as a log size ratio


def functions(ir: str) -> dict[str, str]:
    """Each defined function's text, its metadata and attribute group numbers blanked: two
    modules number those apart even for the same function."""
    return {m.group(1): NUMBERED.sub(lambda n: n.group(0)[0], m.group(0))
            for m in DEFINITION.finditer(ir)}


def optimised(opt: str, bitcode: str, pic: bool, pipeline: str) -> str:
    """The TU's IR after `pipeline`, as text."""
    command = [opt, "-S", f"-passes={pipeline}", bitcode, "-o", "-"]
    if pic:
        command.insert(1, "-relocation-model=pic")
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", help="a directory LLMCC_RECORD wrote")
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args()
    bitcodes = sorted(glob.glob(os.path.join(args.records, "*.bc")))
    if not bitcodes:
        parser.error(f"no recorded TUs in {args.records}")
    opt = check_tools(default_clang("", os.environ.get("PATH", ""), frozenset()), "").opt
    forest = Forest.load(FOREST_FILE)
    same = total = same_lines = lines = modules = 0
    for bitcode in bitcodes:
        with open(bitcode[:-3] + ".json") as handle:
            pic = json.load(handle)["pic"]
        oz = functions(optimised(opt, bitcode, pic, "default<Oz>"))
        summary = summarize_ir(optimised(opt, bitcode, pic, "verify"))
        for j in forest.choose(summary, args.k, MIN_GAIN):
            ours = functions(optimised(opt, bitcode, pic, to_pipeline(forest.lists[j])))
            alike = [name for name, text in ours.items() if oz.get(name) == text]
            modules += 1
            same, total = same + len(alike), total + len(ours)
            same_lines += sum(ours[name].count("\n") for name in alike)
            lines += sum(text.count("\n") for text in ours.values())
    print(f"{len(bitcodes)} TUs, {modules} lists' modules: {same} of {total} functions "
          f"({100 * same / max(1, total):.0f}%) as -Oz leaves them, {same_lines} of {lines} "
          f"instruction lines ({100 * same_lines / max(1, lines):.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
