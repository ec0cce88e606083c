"""The labelled dataset kept in the repository (`data/dataset/`): what training needs, compact.

Machines are replaced between sessions, so labels live in the repo, not in a work directory:
one xz-compressed JSON-lines file per package (`<package>.jsonl.xz`), rewritten and committed
as each package's labels complete, and `lists.json`, the registry of every pass list ever
broadcast (rows refer to lists by their index there, so a row stays small and a list measured
once is never measured again). The raw IR is not kept: `python -m llmcc.train.corpus`
regenerates it.

A row is one labelled TU:
    tu, package, split, language, ir_tokens, baseline (text + data of clang -Oz's object),
    search: {passes (minimised winner or null), size, size_former, evaluated, seconds, capped},
    broadcast: {list index: size, or null when the symbol rule refused it},
    broadcast_seconds: the time measuring them took (one core, all runs together),
    new_rule_only: [list indices accepted now but refused by the former rule],
    tool_failed: [list indices whose opt or code generation failed] (only when some did; a
        list that only ran past the time limit is left unmeasured, for a later run),
    summary: the model's input (llmcc.summary), when computed.
`size_former` is the smallest object among the search's candidates that the former rule
(`interface.former_refusal`) also accepts: what the search was worth before the rule changed.
"""

from __future__ import annotations

import glob
import json
import lzma
import os

from llmcc.files import write_atomic


def dataset_dir(package_file: str, cwd: str) -> str:
    """The repository's data/dataset: beside the package in a checkout (or an editable
    install); else under `cwd`, for an llmcc installed from a checkout into a virtual
    environment (scripts/setup.sh) and run from that checkout."""
    beside = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(package_file)))), "data", "dataset")
    return beside if os.path.isdir(beside) else os.path.join(cwd, "data", "dataset")


DATASET_DIR = dataset_dir(__file__, os.curdir)  # resolved when used: cwd may vanish
LISTS_FILE = "lists.json"
SUFFIX = ".jsonl.xz"


def package_path(directory: str, package: str) -> str:
    return os.path.join(directory, package + SUFFIX)


def read_package(directory: str, package: str) -> dict[str, dict]:
    """Rows of one package by TU; none if it has no file yet."""
    path = package_path(directory, package)
    if not os.path.exists(path):
        return {}
    with lzma.open(path, "rt") as handle:
        return {row["tu"]: row for row in map(json.loads, handle)}


def write_package(directory: str, package: str, rows: dict[str, dict]) -> str:
    """Rows sorted by TU, atomically; returns the path (for `git add`)."""
    os.makedirs(directory, exist_ok=True)
    text = "".join(json.dumps(rows[tu], sort_keys=True, separators=(",", ":")) + "\n"
                   for tu in sorted(rows))
    path = package_path(directory, package)
    write_atomic(path, lzma.compress(text.encode(), preset=9 | lzma.PRESET_EXTREME))
    return path


def read_all(directory: str = DATASET_DIR) -> list[dict]:
    """Every row of every package, in package then TU order."""
    rows = []
    for path in sorted(glob.glob(os.path.join(directory, "*" + SUFFIX))):
        package = os.path.basename(path)[:-len(SUFFIX)]
        rows.extend(read_package(directory, package).values())
    return rows


def read_lists(directory: str = DATASET_DIR) -> dict:
    """{"lists": [text, ...] (append-only), "broadcast": [indices, the current set]}."""
    try:
        with open(os.path.join(directory, LISTS_FILE)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {"lists": [], "broadcast": []}


def write_lists(directory: str, registry: dict) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, LISTS_FILE)
    write_atomic(path, (json.dumps(registry, indent=0) + "\n").encode())
    return path


def register(registry: dict, texts: list[str]) -> list[int]:
    """Indices of `texts` in the registry, appending the new ones (never reordering)."""
    index = {text: i for i, text in enumerate(registry["lists"])}
    for text in texts:
        if text not in index:
            index[text] = len(registry["lists"])
            registry["lists"].append(text)
    return [index[text] for text in texts]


class NotComparable(ValueError):
    """A user's labels were measured with other broadcast lists than the dataset's."""


def read_with_added(directory: str, registry: dict, added: list[str]) -> list[dict]:
    """The dataset's rows (`registry` its lists) and those `llmcc-ctl label DIR` wrote in each
    DIR of `added` (DIR/labels), to train on together. Rows name lists by index, so each DIR's
    broadcast set must be the dataset's, index for index."""
    def broadcast(of: dict) -> list[tuple[int, str]]:
        return [(i, of["lists"][i]) for i in of["broadcast"]]

    rows = read_all(directory)
    for user_dir in added:
        labels = os.path.join(user_dir, "labels")
        if not registry["broadcast"] or broadcast(read_lists(labels)) != broadcast(registry):
            raise NotComparable(f"{labels} was not measured with this dataset's broadcast "
                                f"lists: run `llmcc-ctl label {user_dir}` again")
        rows += read_all(labels)
    return rows
