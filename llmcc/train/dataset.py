"""The recorded dataset: splits, one package per TU, IR token counts, and its manifest.

`<work>/records/<package>/` holds `<ir hash>.bc` (a TU's frontend IR) and `<ir hash>.json` (how
to generate code for it) for each TU its build compiled through llmcc, and `done.json` once the
build finished (TUs, skip reason, token counts). `<work>/dataset.json` describes the whole
dataset: each package's split, TUs, IR tokens and skip reason, totals, llmcc and clang versions.

IR tokens measure how much code a TU is, cheaply and the same on every machine: the textual IR
(`llvm-dis`) without its comment lines (the ModuleID names the file it was read from), split
into words (runs of letters, digits and `_`) and single punctuation characters, so that
`%call = tail call i32 @f(ptr %p)` is 13 tokens. Counted once per TU and kept in `done.json`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable

from llmcc import __version__
from llmcc.files import write_atomic
from llmcc.toolchain import check_tools, default_clang

SPLITS = (("test", 0.25), ("validation", 0.40), ("train", 1.0))  # upper bounds of the buckets
# A TU recorded by several packages (gnulib, bundled libraries) belongs to the first package by
# split in this order, then by name: held-out splits never hold code the train split has.
OWNER_ORDER = ("train", "validation", "test")
MARKER = "done.json"
TOKEN = re.compile(rb"\w+|[^\w\s]")


def split_of(package: str) -> str:
    """A fixed train/validation/test split by package name (stable across runs and machines)."""
    bucket = int(hashlib.sha256(package.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return next(name for name, upper in SPLITS if bucket <= upper)


def assign_owners(recorded: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each package's TUs (IR hashes, sorted), a TU recorded by several packages kept by one."""
    owner: dict[str, str] = {}
    for package in sorted(recorded, key=lambda p: (OWNER_ORDER.index(split_of(p)), p)):
        for tu in recorded[package]:
            owner.setdefault(tu, package)
    return {package: sorted(tu for tu in set(tus) if owner[tu] == package)
            for package, tus in recorded.items()}


def owned_tus(records: str, held: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Every recorded package's own TUs (see `assign_owners`), by IR hash. `held` (TU ->
    package, from committed rows) keeps a TU with its package when a corpus is rebuilt in
    part: there the TU's first owner may not be built, and it would look like another's own."""
    recorded = {os.path.basename(directory): [os.path.basename(path)[:-3] for path in
                                              glob.glob(os.path.join(directory, "*.bc"))]
                for directory in glob.glob(os.path.join(records, "*")) if os.path.isdir(directory)}
    held = held or {}
    return {package: [tu for tu in tus if held.get(tu, package) == package]
            for package, tus in assign_owners(recorded).items()}


def count_tokens(ir_text: bytes) -> int:
    """IR tokens of textual IR (see the module docstring)."""
    return sum(len(TOKEN.findall(line)) for line in ir_text.splitlines()
               if not line.lstrip().startswith(b";"))


def language_of(record: str) -> str:
    """"c" or "c++": the language a recorded TU (path without extension) was compiled as."""
    with open(record + ".json") as handle:
        return json.load(handle)["language"]


def read_marker(package_dir: str) -> dict | None:
    """A finished build's summary, or None while the package is unbuilt or half built."""
    try:
        with open(os.path.join(package_dir, MARKER)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def write_marker(package_dir: str, marker: dict) -> None:
    os.makedirs(package_dir, exist_ok=True)
    write_atomic(os.path.join(package_dir, MARKER), json.dumps(marker, indent=1).encode())


def token_counts(package_dir: str, marker: dict, llvm_dis: str,
                 status: Callable[[str], None]) -> dict[str, int]:
    """IR tokens per TU of one package; TUs not counted yet are counted and kept in its marker."""
    known = marker.get("ir_tokens", {})
    paths = sorted(glob.glob(os.path.join(package_dir, "*.bc")))
    counts = {}
    for n, path in enumerate(paths, 1):
        tu = os.path.basename(path)[:-3]
        if tu in known:
            counts[tu] = known[tu]
        else:
            status(f"counting IR tokens of {os.path.basename(package_dir)}: {n}/{len(paths)}")
            counts[tu] = count_tokens(subprocess.run(
                [llvm_dis, "-o", "-", path], capture_output=True, check=True, timeout=300).stdout)
    if counts != marker.get("ir_tokens"):
        write_marker(package_dir, {**marker, "ir_tokens": counts})
    return counts


def manifest(records: str, status: Callable[[str], None] = lambda text: None,
             held: dict[str, str] | None = None) -> dict:
    """The dataset's description from the finished packages' markers (TUs as `owned_tus`
    deals them, `held` as it says); counts missing tokens, telling `status(text)`."""
    tools = check_tools(default_clang("", os.environ.get("PATH", ""), frozenset()), "")
    llvm_dis = os.path.join(os.path.dirname(tools.opt), "llvm-dis")
    owned = owned_tus(records, held)
    packages = {}
    for package in sorted(owned):
        marker = read_marker(os.path.join(records, package))
        if marker is None:
            continue
        counts = token_counts(os.path.join(records, package), marker, llvm_dis, status)
        packages[package] = {
            "split": split_of(package), "tus": len(owned[package]),
            "cxx_tus": sum(1 for tu in owned[package]
                           if language_of(os.path.join(records, package, tu)) == "c++"),
            "duplicates": len(counts) - len(owned[package]),
            "ir_tokens": sum(counts[tu] for tu in owned[package]),
            "skipped": marker.get("skipped"), "partial": marker.get("partial")}
    return {"llmcc": __version__, "clang": tools.version,
            "ir_tokens_are": "words and punctuation of llvm-dis text without comment lines",
            "owner_order": list(OWNER_ORDER), "packages": packages, "totals": totals(packages)}


def totals(packages: dict) -> dict:
    """Packages with TUs, TUs and IR tokens per split and in all."""
    sums = {}
    for split in (*OWNER_ORDER, "total"):
        rows = [row for row in packages.values() if split in ("total", row["split"])]
        sums[split] = {"packages": sum(1 for row in rows if row["tus"]),
                       "tus": sum(row["tus"] for row in rows),
                       "ir_tokens": sum(row["ir_tokens"] for row in rows)}
    return sums


def merged(committed: dict, built: dict) -> dict:
    """The manifest of a corpus rebuilt in part: the packages built now as they are now, the
    committed manifest's others as it describes them, totals over both."""
    packages = dict(sorted({**committed.get("packages", {}), **built["packages"]}.items()))
    return {**built, "packages": packages, "totals": totals(packages)}


def write_manifest(work: str, status: Callable[[str], None] = lambda text: None,
                   held: dict[str, str] | None = None) -> dict:
    """`<work>/dataset.json`, rewritten from the records (`manifest`); returns it."""
    data = manifest(os.path.join(work, "records"), status, held)
    write_atomic(os.path.join(work, "dataset.json"), (json.dumps(data, indent=1) + "\n").encode())
    return data


def table(data: dict) -> str:
    """The manifest as the table the corpus builder prints at the end."""
    lines = [f"{'package':<14} {'split':<10} {'TUs':>6} {'IR tokens':>11}  note"]
    for package, row in data["packages"].items():
        notes = [row["skipped"], row["partial"]]
        if row["duplicates"]:
            notes.append(f"{row['duplicates']} more TUs belong to other packages")
        note = "; ".join(note for note in notes if note)
        lines.append(f"{package:<14} {row['split']:<10} {row['tus']:>6} {row['ir_tokens']:>11}  "
                     f"{note}".rstrip())
    for split, row in data["totals"].items():
        packages = f"{row['packages']} {'package' if row['packages'] == 1 else 'packages'}"
        lines.append(f"{split:<14} {packages:<10} {row['tus']:>6} {row['ir_tokens']:>11}")
    return "\n".join(lines)
