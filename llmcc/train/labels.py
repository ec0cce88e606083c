"""Label recorded TUs into the committed dataset (`data/dataset/`, see `labelled.py`).

    python -m llmcc.train.labels --work ~/.cache/llmcc-corpus [--commit]

Stage 1 (search): every train and validation TU, and a seeded sample of test TUs, is searched
(`llmcc.search.tune`, `--budget` evaluations, at most `--seconds` per TU, recorded when the cap
cut it short), seeded with LLVM's -Oz pipeline and the shipped popular lists; the winner is
minimised. Stage 2 (broadcast): the `--broadcast` most frequent distinct train winners, plus
LLVM's -Oz pipeline, are measured on every labelled TU of every split: a ranker's data, and its
oracle. That set is chosen once; TUs labelled later, train ones too, are measured on it.
Each candidate is measured exactly as the wrapper measures it, under the current symbol rule,
and also judged by the former one (`interface.former_refusal`) to show what the rule adds.

Packages go train, then validation, then test; each package's file is rewritten as its TUs
finish and, with `--commit`, committed when the package is done, so a lost machine loses at
most one package's work. A rerun skips every TU and list already in the committed files: that
is how a stopped run resumes, on this machine or a fresh one. Both stages use `--jobs`
processes. The records (the TUs' IR) come from `python -m llmcc.train.corpus --work DIR`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from multiprocessing import Pool

from llmcc.advisor.popular import PopularAdvisor
from llmcc.files import write_atomic
from llmcc.interface import former_refusal
from llmcc.objfile import read_object
from llmcc.optimize import BaselineUnusable, Evaluator, Result
from llmcc.passes import OZ_PIPELINE, parse, to_text
from llmcc.progress import StatusLine, bar
from llmcc.search import minimise, tune
from llmcc.summary import SUMMARY_VERSION, summarize_bitcode
from llmcc.toolchain import default_clang, llvm_dis_beside
from llmcc.train import labelled
from llmcc.train.dataset import (
    OWNER_ORDER,
    language_of,
    merged,
    owned_tus,
    read_marker,
    split_of,
    write_manifest,
)
from llmcc.train.measure import recorded_evaluator

SAVE_EVERY = 20  # rows between rewrites of a package's file during a run
PREPARED_AT_ONCE = 10  # lists whose optimised bitcode waits in the work dir at one time


def _former_ok(result: Result, evaluator: Evaluator) -> bool:
    return result.size is not None and former_refusal(
        read_object(result.object), evaluator.baseline_info) is None


def cpu_seconds() -> float:
    """CPU time used by this process's finished children (the opt and clang runs): a search
    capped by it stops at the same point whatever else the machine runs, where a wall-clock cap
    cut searches short beside a training run."""
    times = os.times()
    return times.children_user + times.children_system


def search_one(job: tuple) -> dict:
    """Worker: search and minimise one TU; the dataset row without its broadcast."""
    package, split, bitcode, budget, seconds, timeout, seeds = job
    row = {"tu": os.path.basename(bitcode)[:-3], "package": package, "split": split,
           "language": language_of(bitcode[:-3])}
    with tempfile.TemporaryDirectory(prefix="llmcc-label-") as workdir:
        evaluator = recorded_evaluator(bitcode, workdir, timeout)
        try:
            baseline = evaluator.baseline()
        except BaselineUnusable as err:
            # a time-out is not the TU's fault: left unlabelled, a later run tries it again
            return {**row, "timed_out" if err.timed_out else "error": str(err)}
        started = time.monotonic()
        best, tried = tune(evaluator, [parse(s) for s in seeds], budget, seconds,
                           random.Random(row["tu"]), jobs=1, clock=cpu_seconds)
        passes = None if best.passes is None else minimise(evaluator, best.passes, best.size)
        former = min([baseline.size, *(r.size for r in tried if _former_ok(r, evaluator))])
    return {**row, "baseline": baseline.size, "search": {
        "passes": None if passes is None else to_text(passes), "size": best.size,
        "size_former": former, "evaluated": len(tried),
        "seconds": round(time.monotonic() - started, 1), "capped": len(tried) < budget}}


def summary_one(job: tuple) -> dict:
    """Worker: the model's input for one TU (llmcc.summary), as the compile path computes it."""
    _package, bitcode, clang = job
    return {"tu": os.path.basename(bitcode)[:-3],
            "summary": summarize_bitcode(bitcode, llvm_dis_beside(clang))}


def _broadcast(evaluator: Evaluator, lists: list[tuple[int, str]], out: dict) -> None:
    """broadcast_one's measurements, into `out`."""
    try:
        evaluator.baseline()
    except BaselineUnusable as err:
        lists = []
        out["baseline_failed"] = str(err)
    parsed = [(index, parse(text)) for index, text in lists]
    for number, (index, passes) in enumerate(parsed):
        if number % PREPARED_AT_ONCE == 0:  # opt's work for the next few lists, at once
            evaluator.prepare([p for _, p in parsed[number:number + PREPARED_AT_ONCE]])
        result = evaluator.candidate(passes)
        if result.timed_out:
            out["timed_out"].append(index)
            continue
        out["broadcast"][str(index)] = result.size
        if result.size is not None and not _former_ok(result, evaluator):
            out["new_rule_only"].append(index)
        if result.tool_failure:
            out["tool_failed"].append(index)


def broadcast_one(job: tuple) -> dict:
    """Worker: the given (index, list) pairs on one TU. A list whose opt or code generation
    only ran past the time limit is left unmeasured (`timed_out`), as is every list when the
    baseline did (`baseline_failed`): a later run measures them, where a size recorded as
    missing would read as a refusal forever."""
    _package, bitcode, lists, timeout = job
    out: dict = {"tu": os.path.basename(bitcode)[:-3], "broadcast": {}, "new_rule_only": [],
                 "tool_failed": [], "timed_out": []}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llmcc-label-") as workdir:
        evaluator = recorded_evaluator(bitcode, workdir, timeout)
        try:
            _broadcast(evaluator, lists, out)
        finally:
            evaluator.close()
    out["broadcast_seconds"] = round(time.monotonic() - started, 1)
    return out


def merge(row: dict, update: dict) -> dict:
    """A row with a broadcast result folded in (index lists kept sorted and unique)."""
    merged = {**row, "broadcast": {**row.get("broadcast", {}), **update["broadcast"]},
              "broadcast_seconds": round(row.get("broadcast_seconds", 0)
                                         + update["broadcast_seconds"], 1)}
    for key in ("new_rule_only", "tool_failed"):
        values = sorted(set(row.get(key, [])) | set(update[key]))
        if values:
            merged[key] = values
        else:
            merged.pop(key, None)
    return merged


TEST_SEED = 19  # of the test sample (--seed)


def sample_rank(language: str, tu: str, seed: int = TEST_SEED) -> tuple[bool, str]:
    """A test TU's place in the seeded sample: C++ TUs first (they are few, 50 of 1,849, and
    the model must be measured on C++ apart), then by hash, so the order is stable as packages
    are added and a larger sample extends a smaller one."""
    return language != "c++", hashlib.blake2b(f"{seed}:{tu}".encode()).hexdigest()


def test_sample(tus: list[tuple[str, str]], count: int, seed: int) -> set[str]:
    """A seeded sample of `count` test TUs ((language, TU) pairs): the first by sample_rank."""
    ranked = sorted(tus, key=lambda item: sample_rank(*item, seed))
    return {tu for _, tu in ranked[:count]}


def read_manifest(manifest_path: str) -> dict:
    """The committed corpus manifest ({} before the first one)."""
    try:
        with open(manifest_path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


class Labeller:
    """Runs the stages package by package over one dataset directory, for the corpus
    (`corpus`) or for one directory of a user's records (`user`)."""

    def __init__(self, directory: str, jobs: int, timeout: float, commit: bool,
                 sources: dict[str, str], owned: dict[str, list[str]], split, tokens,
                 packages: list[str]) -> None:
        """`sources`: package -> directory of its TUs' .bc files; `owned`: package -> TUs;
        `split(package)` and `tokens(package)` (IR tokens by TU); `packages` in run order."""
        self.directory, self.jobs, self.timeout, self.commit = directory, jobs, timeout, commit
        self.sources, self.owned, self.split, self.tokens = sources, owned, split, tokens
        self.packages = packages
        self.missing: list[str] = []  # packages the committed manifest has and this corpus lacks
        self.line = StatusLine()
        os.makedirs(directory, exist_ok=True)

    @classmethod
    def corpus(cls, work: str, directory: str, jobs: int, timeout: float, commit: bool,
               splits: tuple[str, ...] = OWNER_ORDER) -> Labeller:
        records = os.path.join(work, "records")
        held = {row["tu"]: row["package"] for row in labelled.read_all(directory)}
        corpus = write_manifest(work, StatusLine().show, held)  # counts new packages' IR tokens
        owned = owned_tus(records, held)
        built = {p for p in owned if read_marker(os.path.join(records, p)) is not None}
        order = {split: i for i, split in enumerate(OWNER_ORDER)}
        packages = sorted((p for p in built if owned[p] and split_of(p) in splits),
                          key=lambda p: (order[split_of(p)], p))
        labeller = cls(directory, jobs, timeout, commit,
                       {p: os.path.join(records, p) for p in owned}, owned, split_of,
                       lambda p: read_marker(os.path.join(records, p)).get("ir_tokens", {}),
                       packages)
        corpus_path = os.path.join(directory, "corpus.json")
        committed = read_manifest(corpus_path)
        labeller.missing = sorted(set(committed.get("packages", {})) - set(corpus["packages"]))
        if labeller.missing:  # a corpus rebuilt in part (to resume a split, or to add packages)
            labeller.line.finish(f"corpus.json: {len(corpus['packages'])} packages built in "
                                 f"{work}, {len(labeller.missing)} others kept as committed")
            corpus = merged(committed, corpus)
        write_atomic(corpus_path, (json.dumps(corpus, indent=1) + "\n").encode())
        labeller._commit([corpus_path], "dataset: corpus manifest")
        return labeller

    @classmethod
    def user(cls, records: str, jobs: int, timeout: float) -> Labeller:
        """The TUs `LLMCC_RECORD=records` kept, as train rows of a package named after the
        directory, labelled into `records/labels`."""
        package = os.path.basename(os.path.abspath(records))
        tus = sorted(name[:-3] for name in os.listdir(records) if name.endswith(".bc"))
        return cls(os.path.join(records, "labels"), jobs, timeout, False, {package: records},
                   {package: tus}, lambda p: "train", lambda p: {}, [package])

    def _run(self, package: str, worker, jobs: list, fold) -> None:
        """Run `worker` over `jobs`, folding each result into the package's rows, saving as
        it goes and committing at the end."""
        if not jobs:
            return
        rows = labelled.read_package(self.directory, package)
        label = f"{package} ({self.split(package)})"
        with Pool(self.jobs) as pool:
            for n, result in enumerate(pool.imap_unordered(worker, jobs), 1):
                fold(rows, result)
                self.line.show(f"{label}: {worker.__name__} {bar(n, len(jobs))} {n}/{len(jobs)}")
                if n % SAVE_EVERY == 0:
                    labelled.write_package(self.directory, package, rows)
        path = labelled.write_package(self.directory, package, rows)
        self.line.finish(f"{label}: {worker.__name__} done, {len(jobs)} TUs")
        self._commit([path], f"dataset: {package}, {worker.__name__} on {len(jobs)} TUs")

    def _commit(self, paths: list[str], message: str) -> None:
        if not self.commit:
            return
        repo = os.path.dirname(os.path.dirname(os.path.abspath(self.directory)))
        for attempt in range(5):  # another git command may hold the index for a moment
            added = subprocess.run(["git", "-C", repo, "add", "--", *paths], check=False,
                                   capture_output=True)
            done = subprocess.run(["git", "-C", repo, "commit", "-q", "-m", message, "--",
                                   *paths], check=False, capture_output=True, text=True)
            if added.returncode == 0 and done.returncode in (0, 1):
                return
            time.sleep(2 + attempt)
        self.line.finish(f"warning: could not commit {message}: {done.stderr.strip()}")

    def search(self, budget: int, seconds: float, test_tus: int, seed: int) -> None:
        missing_test = [p for p in self.missing if self.split(p) == "test"]
        if missing_test and any(self.split(p) == "test" for p in self.packages):
            raise SystemExit(f"the test sample is drawn from every test package: build "
                             f"{', '.join(missing_test)} first")
        seeds = [to_text(p) for p in PopularAdvisor.load().lists]
        test = test_sample([(language_of(self._bitcode(p, tu)[:-3]), tu)
                            for p in self.packages if self.split(p) == "test"
                            for tu in self.owned[p]], test_tus, seed)
        for package in self.packages:
            rows = labelled.read_package(self.directory, package)
            tokens = self.tokens(package)
            wanted = [tu for tu in self.owned[package]
                      if self.split(package) != "test" or tu in test]
            jobs = [(package, self.split(package), self._bitcode(package, tu), budget,
                     seconds, self.timeout, seeds) for tu in wanted if tu not in rows]

            def fold(rows: dict, row: dict, tokens=tokens, package=package) -> None:
                if "timed_out" in row:
                    self.line.finish(f"{package}: {row['tu']} left unlabelled, its baseline "
                                     f"{row['timed_out']} (a rerun, maybe with a longer "
                                     "--timeout, tries it again)")
                    return
                if "ir_tokens" not in row and row["tu"] in tokens:
                    row["ir_tokens"] = tokens[row["tu"]]
                rows[row["tu"]] = row

            self._run(package, search_one, jobs, fold)
            self.summaries(package)

    def summaries(self, package: str) -> None:
        """Give every row of `package` the current version of its summary."""
        rows = labelled.read_package(self.directory, package)
        clang = default_clang("", os.environ.get("PATH", ""), frozenset())
        jobs = [(package, self._bitcode(package, tu), clang)
                for tu, row in sorted(rows.items())
                if row.get("summary", {}).get("version") != SUMMARY_VERSION]

        def fold(rows: dict, update: dict) -> None:
            rows[update["tu"]]["summary"] = update["summary"]

        self._run(package, summary_one, jobs, fold)

    def _bitcode(self, package: str, tu: str) -> str:
        return os.path.join(self.sources[package], tu + ".bc")

    def broadcast_set(self, count: int) -> list[int]:
        """Register the broadcast set (top `count` train winners and -Oz); its indices. Once
        registered it is kept: its lists are the model's answers, measured on every labelled
        TU, so train TUs added later (a grown corpus) are measured on it, not allowed to
        change it."""
        registry = labelled.read_lists(self.directory)
        if registry.get("broadcast"):
            return registry["broadcast"]
        rows = labelled.read_all(self.directory)
        searched = {r["tu"] for r in rows if r["split"] == "train"}
        unsearched = sum(1 for package, tus in self.owned.items()
                         if self.split(package) == "train" for tu in tus if tu not in searched)
        if unsearched:  # the set would change once they are searched, wasting measurements
            raise SystemExit(f"{unsearched} train TUs are not searched yet: the broadcast set "
                             "is their most frequent winners (run --stage search first)")
        oz = to_text(OZ_PIPELINE)  # a search may find it beats clang's -Oz: counted once
        wins = Counter(r["search"]["passes"] for r in rows if r["split"] == "train"
                       and "search" in r and r["search"]["passes"] not in (None, oz))
        texts = [oz, *(text for text, _ in wins.most_common(count))]
        registry["broadcast"] = labelled.register(registry, texts)
        path = labelled.write_lists(self.directory, registry)
        self._commit([path], f"dataset: broadcast set, {len(registry['broadcast'])} lists")
        return registry["broadcast"]

    def measure_broadcast(self, indices: list[int]) -> None:
        """Measure the registered lists `indices` on every labelled TU that lacks them."""
        registry = labelled.read_lists(self.directory)
        for package in self.packages:
            rows = labelled.read_package(self.directory, package)
            jobs, unrecorded = [], 0
            for tu, row in sorted(rows.items()):
                missing = [(i, registry["lists"][i]) for i in indices
                           if str(i) not in row.get("broadcast", {})]
                if not missing or "error" in row:
                    continue
                if os.path.exists(self._bitcode(package, tu)):
                    jobs.append((package, self._bitcode(package, tu), missing, self.timeout))
                else:
                    unrecorded += 1
            if unrecorded:  # a rebuilt package whose build is not reproducible gave it new IR
                self.line.finish(f"{package}: {unrecorded} labelled TUs are not in this corpus's "
                                 "records: left without broadcast sizes")

            def fold(rows: dict, update: dict, package=package) -> None:
                rows[update["tu"]] = merge(rows[update["tu"]], update)
                if "baseline_failed" in update or update["timed_out"]:
                    why = update.get("baseline_failed") or (
                        f"lists {update['timed_out']} ran past --timeout")
                    self.line.finish(f"{package}: {update['tu']} left partly unmeasured, {why} "
                                     "(a rerun measures the rest)")

            self._run(package, broadcast_one, jobs, fold)


def label_records(records: str, jobs: int, budget: int, seconds: float, timeout: float,
                  dataset: str = labelled.DATASET_DIR) -> str:
    """`llmcc-ctl label DIR`: a user's recorded TUs searched, summarised and measured with the
    dataset's broadcast set (so they can join its train split); returns the labels' path."""
    labeller = Labeller.user(records, jobs, timeout)
    labeller.search(budget, seconds, 0, 0)
    registry = labelled.read_lists(dataset)
    labelled.write_lists(labeller.directory, registry)
    labeller.measure_broadcast(registry["broadcast"])
    return labelled.package_path(labeller.directory, labeller.packages[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.expanduser("~/.cache/llmcc-corpus"))
    parser.add_argument("--out", default=labelled.DATASET_DIR, help="the dataset directory")
    parser.add_argument("--budget", type=int, default=120, help="search evaluations per TU")
    parser.add_argument("--seconds", type=float, default=120.0, help="search time cap per TU")
    parser.add_argument("--test-tus", type=int, default=450, help="test TUs to label")
    parser.add_argument("--broadcast", type=int, default=100,
                        help="train winners broadcast (chosen once: a registered set is kept)")
    parser.add_argument("--stage", choices=("search", "broadcast", "all"), default="all")
    parser.add_argument("--seed", type=int, default=TEST_SEED)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--commit", action="store_true",
                        help="git commit each package's file as it completes")
    parser.add_argument("--splits", default=",".join(OWNER_ORDER),
                        help="only these splits' packages (comma-separated): two runs on "
                        "different splits never write the same file")
    args = parser.parse_args(argv)
    splits = tuple(args.splits.split(","))
    if not set(splits) <= set(OWNER_ORDER):
        parser.error(f"--splits: known splits are {', '.join(OWNER_ORDER)}")
    labeller = Labeller.corpus(args.work, args.out, args.jobs, args.timeout, args.commit,
                               splits)
    if args.stage in ("search", "all"):
        labeller.search(args.budget, args.seconds, args.test_tus, args.seed)
    if args.stage in ("broadcast", "all"):
        labeller.measure_broadcast(labeller.broadcast_set(args.broadcast))
    from llmcc.train.headroom import main as headroom

    return headroom(["--dir", args.out])


if __name__ == "__main__":
    sys.exit(main())
