"""Tables from the committed dataset alone (no records, no clang): what it holds, and the
headroom it shows on held-out code, with the current and the former symbol rule.

    python -m llmcc.train.headroom [--dir data/dataset] [--split test] [--write-popular]

Every figure is a geometric mean over TUs of the text + data saving against clang -Oz, where a
TU keeps clang's object unless a list makes it smaller (so no regression is possible; the
`regressions` column checks that the data agree). Fixed lists are chosen on the train split
and measured on the other: the best single list, and the popular top-k, ranked greedily as
`llmcc.train.measure.greedy` ranks them. The oracles are per TU: the best of the broadcast
lists, and the per-TU search. `--write-popular` makes the ten best broadcast lists, ranked on
the train split, the popular advisor's data (`llmcc/advisor/popular.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict

from llmcc.advisor.popular import DATA_FILE
from llmcc.files import write_atomic
from llmcc.train import labelled
from llmcc.train.measure import geomean_saving, greedy

KS = (1, 3, 5, 10)


def as_pool_rows(rows: list[dict], indices: list[int], former: bool) -> list[dict]:
    """Rows in the shape `geomean_saving` reads: baseline and one size per broadcast list
    (None where refused, and under the former rule where only the current rule accepts)."""
    out = []
    for row in rows:
        refused = set(row.get("new_rule_only", [])) if former else set()
        sizes = [None if i in refused else row.get("broadcast", {}).get(str(i)) for i in indices]
        search = row["search"]["size_former" if former else "size"]
        out.append({"baseline": row["baseline"], "sizes": sizes, "search": search})
    return out


Chosen = tuple[int, list[int]] | None  # the best single list and the popular order


def choose(train: list[dict], n: int) -> Chosen:
    """The fixed lists chosen on `train` (pool rows); None when there is nothing to choose.
    Choosing is the slow part (a greedy pass over every TU): done once per table."""
    if not (n and train):
        return None
    return max(range(n), key=lambda i: geomean_saving(train, [i])), greedy(train, n, max(KS))


def figures(chosen: Chosen, held_out: list[dict], n: int) -> dict[str, float]:
    """The headroom columns for `held_out` (pool rows), fixed lists as `choose` chose them."""
    result: dict[str, float] = {}
    if chosen:
        single, order = chosen
        result["best single fixed list"] = geomean_saving(held_out, [single])
        for k in KS:
            result[f"popular top-{k}"] = geomean_saving(held_out, order[:k])
        result[f"best of the {n} broadcast lists per TU"] = geomean_saving(
            held_out, list(range(n)))
    oracle = [{"baseline": r["baseline"], "sizes": [r["search"]]} for r in held_out]
    result["per-TU search"] = geomean_saving(oracle, [0])
    return result


def labelled_rows(directory: str) -> tuple[list[dict], list[int]]:
    rows = [r for r in labelled.read_all(directory) if "search" in r and r.get("baseline")]
    return rows, labelled.read_lists(directory).get("broadcast", [])


def headroom_table(rows: list[dict], indices: list[int], split: str,
                   language: str | None = None) -> str:
    """Current and former rule side by side on `split` (its TUs in `language`, if given),
    lists chosen on all of train."""
    train = [r for r in rows if r["split"] == "train"]
    held = [r for r in rows if r["split"] == split and language in (None, r["language"])]
    columns = {}
    for name, former in (("current rule", False), ("former rule", True)):
        columns[name] = figures(choose(as_pool_rows(train, indices, former), len(indices)),
                                as_pool_rows(held, indices, former), len(indices))
    title = f"the {split} split" + (f", {language}" if language else "")
    lines = [f"| on {title} ({len(held)} TUs) | current rule | former rule |",
             "|---|---:|---:|"]
    for what in columns["current rule"]:
        lines.append(f"| {what} | {columns['current rule'][what]:.2f}% | "
                     f"{columns['former rule'][what]:.2f}% |")
    improved = sum(1 for r in held if r["search"]["size"] < r["baseline"])
    larger = sum(1 for r in held if r["search"]["size"] > r["baseline"])
    lines.append(f"| TUs improved by the search | {improved}/{len(held)} | "
                 f"{sum(1 for r in held if r['search']['size_former'] < r['baseline'])}"
                 f"/{len(held)} |")
    lines.append(f"| regressions | {larger} | 0 |")
    return "\n".join(lines)


def per_group_table(rows: list[dict], indices: list[int], split: str, key: str) -> str:
    """The current rule's figures per package (or language) of `split`."""
    chosen = choose(as_pool_rows([r for r in rows if r["split"] == "train"], indices, False),
                    len(indices))
    groups = defaultdict(list)
    for row in rows:
        if row["split"] == split:
            groups[row[key]].append(row)
    names = ["best single fixed list", "popular top-3", "popular top-10",
             f"best of the {len(indices)} broadcast lists per TU", "per-TU search"]
    lines = [f"| {key} | TUs | " + " | ".join(names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for group, members in sorted(groups.items()):
        values = figures(chosen, as_pool_rows(members, indices, False), len(indices))
        lines.append(f"| {group} | {len(members)} | " + " | ".join(
            f"{values[name]:.2f}%" if name in values else "-" for name in names) + " |")
    return "\n".join(lines)


def dataset_table(rows: list[dict], directory: str) -> str:
    """Packages, TUs (C / C++), IR tokens of the corpus, and labelled TUs, per split."""
    try:
        with open(os.path.join(directory, "corpus.json")) as handle:
            corpus = json.load(handle)
    except FileNotFoundError:
        corpus = {"packages": {}}
    lines = ["| split | packages | TUs (C / C++) | IR tokens | labelled TUs (C / C++) |",
             "|---|---:|---:|---:|---:|"]
    for split in ("train", "validation", "test"):
        packages = {p: v for p, v in corpus["packages"].items()
                    if v["split"] == split and v["tus"]}
        mine = [r for r in rows if r["split"] == split]
        tus = sum(v["tus"] for v in packages.values())
        c_tus = tus - sum(v.get("cxx_tus", 0) for v in packages.values())
        tokens = sum(v["ir_tokens"] for v in packages.values())
        c_labelled = sum(1 for r in mine if r["language"] == "c")
        lines.append(f"| {split} | {len(packages)} | {tus} ({c_tus} / {tus - c_tus}) | "
                     f"{tokens / 1e6:.1f} M | {len(mine)} ({c_labelled} / "
                     f"{len(mine) - c_labelled}) |")
    return "\n".join(lines)


def timing_table(rows: list[dict]) -> str:
    """What each stage cost per 1,000 TUs: one worker is one core, so `--jobs 2` on two cores
    takes half the core-hours in wall-clock hours (more when other work shares the cores)."""
    lines = ["| stage | TUs | seconds per TU (one core) | core-hours per 1,000 TUs |",
             "|---|---:|---:|---:|"]
    for stage, seconds in (("search", [r["search"]["seconds"] for r in rows
                                      if "seconds" in r.get("search", {})]),
                           ("broadcast", [r["broadcast_seconds"] for r in rows
                                          if "broadcast_seconds" in r])):
        if seconds:
            mean = sum(seconds) / len(seconds)
            lines.append(f"| {stage} | {len(seconds)} | {mean:.1f} | {mean * 1000 / 3600:.1f} |")
    return "\n".join(lines)


def write_popular(rows: list[dict], indices: list[int], directory: str, command: str) -> None:
    """The top ten broadcast lists, greedily ranked on train, as the popular advisor's data."""
    lists = labelled.read_lists(directory)["lists"]
    train = as_pool_rows([r for r in rows if r["split"] == "train"], indices, False)
    test = as_pool_rows([r for r in rows if r["split"] == "test"], indices, False)
    chosen = choose(train, len(indices))
    order = chosen[1][:10] if chosen else []  # greedy: its first ten are the ten best
    data = {"lists": [{"passes": lists[indices[i]]} for i in order],
            "provenance": {"command": command, "train_tus": len(train), "test_tus": len(test),
                           "headroom_test": {k: round(v, 3) for k, v in
                                             figures(chosen, test, len(indices)).items()}
                                            if test else {}}}  # no figures of no TUs
    write_atomic(DATA_FILE, (json.dumps(data, indent=1) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=labelled.DATASET_DIR)
    parser.add_argument("--split", default="test", choices=("test", "validation"))
    parser.add_argument("--write-popular", action="store_true",
                        help="write the ten best lists (ranked on train) to popular.json")
    args = parser.parse_args(argv)
    rows, indices = labelled_rows(args.dir)
    if not rows:
        print(f"no labelled TUs in {args.dir}")
        return 1
    print(dataset_table(rows, args.dir), end="\n\n")
    print(timing_table(rows), end="\n\n")
    # a TU searched but not yet broadcast would count as one no fixed list improves
    measured = [r for r in rows if "broadcast" in r]
    print(headroom_table(measured, indices, args.split), end="\n\n")
    for language in sorted({r["language"] for r in measured if r["split"] == args.split}):
        print(headroom_table(measured, indices, args.split, language), end="\n\n")
    print(per_group_table(measured, indices, args.split, "language"), end="\n\n")
    print(per_group_table(measured, indices, args.split, "package"))
    if args.write_popular:
        write_popular(measured, indices, args.dir,
                      "python -m llmcc.train.headroom " + " ".join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
