"""The `forest` advisor: trees over the numbers of the TU summary find the training TUs a TU
resembles, and its k lists are those that together saved the most on them.

Every number of a TU's summary (llmcc.summary) is a feature, log(1 + n). The forest, grown by
`llmcc-ctl train --forest` (llmcc.train.forest, scikit-learn's extremely randomised trees
learning each broadcast list's log size ratio to clang -Oz), is shipped as plain arrays in
`forest.bin`; this module walks it with the standard library alone, so a compile imports
neither scikit-learn nor numpy and needs no server. A TU's neighbours are the training TUs that
share its leaves, each weighted 1 / leaf size summed over the trees (the forest's own notion of
similarity), and its lists are chosen greedily on them, as the popular lists are chosen on all
training TUs: the first saves the most, each next one the most beside those, and a list that
adds nothing ends the choice, so a TU like those nothing helped tries fewer lists.

The file: MAGIC, a little-endian u32 header length, a JSON header (feature names, the lists,
the summary version, array lengths, how it was made), then the arrays in ARRAYS order. Nodes are
numbered in preorder, so a split's left child is the next node; `right` holds the right child,
or for a leaf its number in `bounds`, which delimit each leaf's training TUs in `members`. What
each training TU keeps with each list that shrinks it (most lists do not) is its log size ratio
in units of 1 / RATIO_SCALE: `saving_list` and `saving_ratio` from `saving_start[tu]`.
"""

from __future__ import annotations

import math
import os
import sys

from llmcc.advisor import AdvisorError
from llmcc.passes import PassList, PassListError, never_run, parse

FOREST_FILE = os.path.join(os.path.dirname(__file__), "forest.bin")
MAGIC = b"llmcc-forest 1\n"
RATIO_SCALE = 10000
# name, typecode (little-endian on disk), header key holding its length
ARRAYS = (("roots", "i", "trees"), ("feature", "i", "nodes"), ("threshold", "f", "nodes"),
          ("right", "i", "nodes"), ("bounds", "i", "leaves_plus_one"),
          ("members", "H", "members"), ("saving_start", "i", "tus_plus_one"),
          ("saving_list", "H", "savings"), ("saving_ratio", "h", "savings"))

SECTIONS = ("calls", "globals", "module", "rest", "size_buckets", "opcodes", "types",
            "intrinsics", "library_calls")
LARGEST = 3  # the largest functions' instruction counts, one feature each


def features(summary: dict) -> dict[str, float]:
    """The summary's numbers by name: every count of its sections and the largest functions'
    instruction counts."""
    named = {f"{section}.{key}": value for section in SECTIONS
             for key, value in (summary.get(section) or {}).items()
             if isinstance(value, (int, float))}
    largest = sorted((f["instructions"] for f in summary.get("functions", [])), reverse=True)
    named.update((f"largest.{i}", largest[i] if i < len(largest) else 0)
                 for i in range(LARGEST))
    return named


def inputs(summary: dict, index: dict[str, int]) -> list[float]:
    """log(1 + n) of each feature (`index`: name -> position; 0 where the TU lacks it),
    rounded to float32 as the trees were grown on."""
    from array import array  # here, not above: it imports collections, ~3 ms on a cache hit

    vector = array("f", bytes(4 * len(index)))
    for name, value in features(summary).items():
        if name in index:
            vector[index[name]] = math.log1p(max(0.0, value))
    return vector.tolist()


def weighted_greedy(tus: list[tuple[float, dict[int, int]]], width: int, k: int,
                    min_gain: float = 0.0, excluded: frozenset[int] = frozenset()) -> list[int]:
    """The at most k lists (of `width`, none of `excluded`) that together save the most on the
    weighted TUs (each its weight and {list: log size ratio} of the lists that shrink it); a
    list expected to add less than `min_gain` (a log size ratio; 0: nothing) ends the
    choice."""
    stop = -min_gain * RATIO_SCALE * sum(weight for weight, _ in tus)
    # each TU: its weight, what the lists chosen so far keep of it (its floor), and the lists
    # that would keep more: only those can add anything
    left = [(weight, 0, savings) for weight, savings in tus]
    chosen: list[int] = []
    for _ in range(min(k, width)):
        totals = [0.0] * width
        for weight, floor, below in left:
            for j, value in below.items():
                totals[j] += weight * (value - floor)
        best = min((j for j in range(width) if j not in chosen and j not in excluded),
                   key=totals.__getitem__, default=None)
        if best is None or totals[best] >= stop:
            break
        chosen.append(best)
        if len(chosen) == k:
            break
        kept = []
        for weight, floor, below in left:
            if below.get(best, 0) < floor:  # only a TU the new list shrinks has a new floor
                floor = below[best]
                below = {j: v for j, v in below.items() if v < floor}
            kept.append((weight, floor, below))
        left = kept
    return chosen


class Forest:
    """A forest file read into arrays: `neighbours` and `choose` are pure functions of them."""

    def __init__(self, header: dict, arrays: dict) -> None:
        """`arrays`: ARRAYS by name, each a view of the file's bytes (or, on a big-endian
        machine, an array.array)."""
        self.header = header
        self.index = {name: i for i, name in enumerate(header["features"])}
        self.texts: list[str] = header["lists"]
        for name, values in arrays.items():
            setattr(self, name, values)

    @classmethod
    def load(cls, path: str) -> Forest:
        """The forest in the file at `path`, read again only if the file changed since this
        process (or the fork server it was forked from: llmcc.forkserver) last read it."""
        try:
            with open(path, "rb") as handle:
                status = os.fstat(handle.fileno())
                version = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns,
                           status.st_ctime_ns)
                if _LOADED.get(path, (None,))[0] == version:
                    return _LOADED[path][1]
                blob = handle.read()
        except OSError as err:
            raise AdvisorError(f"forest file {path}: {err.strerror}") from None
        try:
            forest = cls.from_bytes(blob)
        except (ValueError, KeyError, TypeError, PassListError) as err:
            raise AdvisorError(f"forest file {path} is corrupt: {err}") from None
        _LOADED[path] = (version, forest)
        return forest

    @classmethod
    def from_bytes(cls, blob: bytes) -> Forest:
        """The forest a file holds; ValueError (or KeyError, TypeError, PassListError) if it
        holds none."""
        import json
        from array import array

        if not blob.startswith(MAGIC):
            raise ValueError("not an llmcc forest file")
        at = len(MAGIC) + 4
        size = int.from_bytes(blob[len(MAGIC):at], "little")
        header = json.loads(blob[at:at + size])
        at += size
        arrays, view = {}, memoryview(blob)  # slices of a view copy nothing
        for name, code, length in ARRAYS:
            end = at + header[length] * array(code).itemsize
            if end > len(blob):
                raise ValueError("truncated")
            if sys.byteorder == "little":  # the file's order: read in place
                values = view[at:end].cast(code)
            else:
                values = array(code)
                values.frombytes(view[at:end])
                values.byteswap()
            arrays[name], at = values, end
        if at != len(blob):
            raise ValueError("trailing bytes")
        forest = cls(header, arrays)
        forest.lists = [parse(text) for text in forest.texts]
        # lists the file may hold but no compile may try (llmcc.passes.NEVER_RUN)
        forest.never = frozenset(i for i, passes in enumerate(forest.lists)
                                 if never_run(passes))
        return forest

    def neighbours(self, x: list[float]) -> dict[int, float]:
        """Training TU -> weight: 1 / size of each leaf it shares with `x`, summed."""
        feature, threshold, right, bounds, members = (self.feature, self.threshold,
                                                      self.right, self.bounds, self.members)
        weights: dict[int, float] = {}
        for node in self.roots:
            while (f := feature[node]) >= 0:
                if x[f] <= threshold[node]:
                    node += 1
                elif right[node] > node:  # preorder: a tree only ever leads forward
                    node = right[node]
                else:
                    raise ValueError(f"node {node} leads back to node {right[node]}")
            start, end = bounds[right[node]], bounds[right[node] + 1]
            share = 1.0 / (end - start)
            for tu in members[start:end]:
                weights[tu] = weights.get(tu, 0.0) + share
        return weights

    def neighbour_savings(self, summary: dict) -> list[tuple[float, dict[int, int]]]:
        """The TU's neighbours as weighted_greedy weighs them: each one's weight and what each
        list that shrinks it keeps (log size ratio, in units of 1 / RATIO_SCALE)."""
        start, lists, ratios = self.saving_start, self.saving_list, self.saving_ratio
        return [(weight, dict(zip(lists[start[tu]:start[tu + 1]],
                                  ratios[start[tu]:start[tu + 1]], strict=True)))
                for tu, weight in self.neighbours(inputs(summary, self.index)).items()]

    def choose(self, summary: dict, k: int, min_gain: float = 0.0) -> list[int]:
        """The positions in `lists` of the TU's at most k lists (weighted_greedy), none of
        `never`."""
        return weighted_greedy(self.neighbour_savings(summary), len(self.texts), k, min_gain,
                               self.never)


_LOADED: dict[str, tuple[tuple, Forest]] = {}  # path -> (the file's stat, its forest)


def forest_path(settings) -> str:
    return settings.forest or FOREST_FILE


def identity(settings) -> str:
    from llmcc.advisor.model import digest_memo_dir

    return file_identity(forest_path(settings), digest_memo_dir(settings))


def file_identity(path: str, memo_dir: str | None = None) -> str:
    """The advisor identity of the forest file at `path` (every cache key holds it)."""
    from llmcc.advisor.model import file_digest

    return "forest:" + file_digest(path, memo_dir, "forest file")


class ForestAdvisor:
    """What went wrong reaches the driver as `failure`: the popular lists are tried and the
    decision is not cached."""

    def __init__(self, settings, disassemble, fallback) -> None:
        self.settings, self.disassemble, self.fallback = settings, disassemble, fallback
        self.identity = identity(settings)
        self.path = forest_path(settings)
        self.forest = Forest.load(self.path)
        self.failure: str | None = None

    def suggest(self, bitcode_path: str, k: int) -> list[PassList]:
        from llmcc.summary import SUMMARY_VERSION, summarize_ir
        from llmcc.toolchain import StepFailed

        if not k:
            return []
        if self.forest.header.get("summary_version") != SUMMARY_VERSION:
            return self._popular(k, f"{self.path} was grown on summary version "
                                    f"{self.forest.header.get('summary_version')}, llmcc "
                                    f"renders version {SUMMARY_VERSION}")
        try:
            ir = self.disassemble(bitcode_path)
        except StepFailed as err:
            return self._popular(k, f"the TU could not be read for the forest: {err}")
        try:
            chosen = self.forest.choose(summarize_ir(ir), k, self.settings.min_gain / 100)
        except (IndexError, ValueError, ZeroDivisionError) as err:
            # arrays of the right lengths whose contents are not a forest (a damaged file)
            return self._popular(k, f"{self.path} is corrupt: {err}")
        return [self.forest.lists[i] for i in chosen]

    def _popular(self, k: int, reason: str) -> list[PassList]:
        lists, self.failure = self.fallback.instead(k, reason)
        return lists
