"""How good a model's advice is, on held-out TUs of the committed dataset (no clang needed).

    llmcc-ctl eval [--model FILE] [--split test]     # the dataset's held-out split
    llmcc-ctl eval --after 450                       # test TUs labelled after the first 450
    llmcc-ctl eval DIR                               # TUs recorded in DIR, labelled by
                                                     # `llmcc-ctl label DIR`

Every labelled TU of the split holds the measured size of each broadcast list, so the model's
top k lists for a TU (ranked from the TU's stored summary, as at compile time) are scored
without compiling: the TU keeps the smallest of clang's -Oz object and those lists' objects.
The table sets the model beside what it must beat, all as geometric-mean % of text + data
below clang -Oz (llmcc.train.measure): the best fixed list and the popular top-k (chosen on
the train split, as llmcc.train.headroom chooses them), and the oracles (best broadcast list
per TU, per-TU search). A list the model answers that was never broadcast has no measured
size and counts as no saving.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import NamedTuple

from llmcc.passes import PassList, never_run, parse
from llmcc.summary import to_prompt
from llmcc.train import labelled
from llmcc.train.headroom import as_pool_rows
from llmcc.train.measure import geomean_saving, greedy, tu_log_ratios

KS = (1, 2, 3, 5, 10)
MIN_GAINS = (0.001, 0.003, 0.01)  # expected savings below which no list is tried (log ratios)
# (a TU's summary, k, min_gain) -> the advisor's lists (llmcc.advisor.model_runtime.answers,
# llmcc.advisor.forest.Forest.choose)
Ranker = Callable[[dict, int, float], list[PassList]]
Order = Sequence[int | None]                   # a TU's choices: positions in the broadcast set


def never_run_positions(texts: Sequence[str]) -> list[int]:
    """The positions of the lists in `texts` that llmcc never runs (llmcc.passes.NEVER_RUN):
    whoever scores or teaches with the broadcast sizes counts them as refused."""
    return [j for j, text in enumerate(texts) if never_run(parse(text))]


def runnable(pool: list[dict], texts: list[str]) -> list[dict]:
    """Pool rows with each list that llmcc never runs counted as refused: what no compile can
    get is no saving for an advisor, a fixed list or an oracle."""
    never = never_run_positions(texts)
    if not never:
        return pool
    out = []
    for row in pool:
        sizes = list(row["sizes"])
        for j in never:
            sizes[j] = None
        out.append({**row, "sizes": sizes})
    return out


def chosen_rows(pool: list[dict], orders: Sequence[Order], k: int) -> list[dict]:
    """Pool rows reduced to each TU's own first k choices (None: no measured size)."""
    rows = []
    for row, order in zip(pool, orders, strict=True):
        picked = [None if i is None else row["sizes"][i] for i in order[:k]]
        rows.append({"baseline": row["baseline"], "sizes": picked + [None] * (k - len(picked))})
    return rows


def score(pool: list[dict], orders: Sequence[Order], k: int) -> tuple[float, int]:
    """(geomean % below -Oz, TUs improved) when each TU tries its first k choices."""
    rows = chosen_rows(pool, orders, k)
    improved = sum(1 for r in rows if any(s is not None and s < r["baseline"]
                                          for s in r["sizes"]))
    return geomean_saving(rows, list(range(k))), improved


def model_orders(summaries: list[dict], texts: list[str],
                 rank: Ranker) -> dict[int, list[list[int | None]]]:
    """For each k, each TU's k model answers as positions in the broadcast set: asked once per
    k, as a compile asks (the lists chosen for k need not be the first of those for a larger
    k, see llmcc.advisor.model_runtime.answers)."""
    return {k: orders_of(summaries, texts, rank, k, 0.0) for k in KS}


def model_ranker(runtime) -> Ranker:
    """The Ranker of a llama (llmcc.advisor.model_runtime.ModelRuntime): it reads the summary
    as the prompt a compile renders and chooses as `runtime.rank` does, but evaluates each
    prompt once: the tables ask for every k and min_gain of a TU (eight answers), all chosen
    from the same likelihoods."""
    top = functools.cache(runtime.top)
    return lambda summary, k, min_gain: runtime.rank(to_prompt(summary), k, min_gain, top)


def positions(texts: Sequence[str]) -> dict[PassList, int]:
    """Each list of `texts` (the broadcast set) -> its position there: where another list
    (an advisor's answer, a forest's list) stands in the measured sizes."""
    return {parse(text): i for i, text in enumerate(texts)}


def orders_of(summaries: list[dict], texts: list[str], rank: Ranker, k: int,
              min_gain: float) -> list[list[int | None]]:
    """Each TU's model answers for k and min_gain, as positions in the broadcast set."""
    position = positions(texts)
    return [[position.get(passes) for passes in rank(summary, k, min_gain)]
            for summary in summaries]


def adaptive_table(held: list[dict], summaries: list[dict], texts: list[str], rank: Ranker,
                   always: list[Order], k: int = 3, name: str = "model") -> str:
    """The model at up to k lists, trying none whose expected saving is below a threshold:
    what each threshold keeps of the saving, and how many lists (each an opt and a code
    generation in a cold compile) it costs per TU. `always`: the orders without a threshold."""
    lines = [(f"| {name}, up to {k} lists, none expected to save less than | % below -Oz | "
              "TUs improved | lists tried per TU |"), "|---|---:|---:|---:|"]
    for min_gain in (0.0, *MIN_GAINS):
        orders = orders_of(summaries, texts, rank, k, min_gain) if min_gain else always
        saving, improved = score(held, orders, k)
        tried = sum(map(len, orders)) / len(orders)
        lines.append(f"| {100 * min_gain:.1f}% | {saving:.2f}% | {improved}/{len(held)} | "
                     f"{tried:.2f} |")
    return "\n".join(lines)


def table(train: list[dict], held: list[dict], orders: dict[int, list[Order]], popular: Order,
          split: str, name: str = "model") -> str:
    """The evaluation table of held-out pool rows (with `search`), lists chosen on `train`
    (`popular`: the top max(KS), greedily)."""
    n = len(held[0]["sizes"])
    single = max(range(n), key=lambda i: geomean_saving(train, [i]))
    lines = [f"| on the {split} split ({len(held)} TUs) | % below -Oz | TUs improved |",
             "|---|---:|---:|", f"| clang -Oz | 0.00% | 0/{len(held)} |"]

    def add(name: str, pool: list[dict], choices: Sequence[Order], k: int) -> float:
        saving, improved = score(pool, choices, k)
        lines.append(f"| {name} | {saving:.2f}% | {improved}/{len(held)} |")
        return saving

    add("best fixed list", held, [[single]] * len(held), 1)
    model_at = {}
    for k in KS:
        add(f"popular top-{k}", held, [popular] * len(held), k)
        model_at[k] = add(f"{name} top-{k}", held, orders[k], k)
    tried = sum(1 for j in range(n) if any(row["sizes"][j] is not None for row in held))
    oracle = add(f"best of the {tried} broadcast lists per TU (oracle)", held,
                 [range(n)] * len(held), n)
    searched = [{"baseline": r["baseline"], "sizes": [r["search"]]} for r in held]
    add("per-TU search (oracle)", searched, [[0]] * len(held), 1)
    for k in (3, 5):
        share = 100 * model_at[k] / oracle if oracle > 0 else 0.0
        lines.append(f"| {name} top-{k}: share of the broadcast oracle | {share:.0f}% | |")
    unmeasured = sum(1 for order in orders[3] for i in order if i is None)
    lines.append(f"| {name} answers (top-3) without a measured size | {unmeasured} | |")
    return "\n".join(lines)


def alike(row: dict, summary: dict) -> tuple:
    """What TUs alike share (a pool row and the TU's summary): the same summary and every
    measured size the same, as a file built twice (static and shared objects) is; small TUs
    that no list changes can share their sizes alone."""
    return json.dumps(summary, sort_keys=True), row["baseline"], tuple(row["sizes"])


def difference(pool: list[dict], ours: Sequence[Order], theirs: Sequence[Order],
               k: int, twins: Sequence[Hashable] | None = None) -> tuple[float, float]:
    """How much more `ours` saves than `theirs` when each TU tries its first k choices: the mean
    over TUs of the difference of their log size ratios to -Oz, and twice its standard error,
    both in points (x 100), so that a group whose difference is more than that band from zero
    differs by more than its TUs' noise. TUs with the same `twins` entry (`alike`) are one
    sample of that noise, not several: the error is clustered on them."""
    first = list(range(k))
    kept = [i for i, row in enumerate(pool) if row["baseline"] > 0]  # as tu_log_ratios keeps
    gains = [100.0 * (their - our) for our, their in zip(
        tu_log_ratios(chosen_rows(pool, ours, k), first),
        tu_log_ratios(chosen_rows(pool, theirs, k), first), strict=True)]
    if not gains:
        return 0.0, 0.0
    mean = sum(gains) / len(gains)
    deviations: dict[Hashable, float] = defaultdict(float)  # per cluster, summed
    for i, gain in zip(kept, gains, strict=True):
        deviations[i if twins is None else twins[i]] += gain - mean
    clusters = len(deviations)
    if clusters < 2:
        return mean, math.inf
    variance = clusters / (clusters - 1) * sum(d * d for d in deviations.values()) / len(gains) ** 2
    return mean, 2.0 * math.sqrt(variance)


def group_table(held: list[dict], twins: list[Hashable], orders: dict[int, list[Order]],
                popular: Order, names: list[str], key: str, k: int = 3,
                name: str = "model") -> str:
    """Popular against model at k, per package or language (`names[i]` of held row i), and the
    model's lead with its noise band (`difference`, clustered on `twins`: each row's `alike`)."""
    groups = defaultdict(list)
    for i, group in enumerate(names):
        groups[group].append(i)
    lines = [(f"| {key} | TUs | popular top-{k} | {name} top-{k} | {name} ahead by, points "
              "(± 2 s.e.) | best broadcast list |"),
             "|---|---:|---:|---:|---:|---:|"]
    for group, members in sorted(groups.items()):
        pool = [held[i] for i in members]
        ours, theirs = [orders[k][i] for i in members], [popular] * len(members)
        values = [score(pool, theirs, k)[0], score(pool, ours, k)[0]]
        lead, band = difference(pool, ours, theirs, k, [twins[i] for i in members])
        verdict = " behind" if lead + band < 0 else ""
        lines.append(f"| {group} | {len(pool)} | " + " | ".join(f"{v:.2f}%" for v in values)
                     + f" | {lead:+.2f} (± {band:.2f}){verdict} | "
                     f"{geomean_saving(pool, list(range(len(pool[0]['sizes'])))):.2f}% |")
    return "\n".join(lines)


def fits_line(prompts: list[str], count: Callable[[str], int], context: int) -> str:
    """Whether every TU's whole prompt fits the model's context (`count`: tokens of a prompt,
    BOS and ANSWER included)."""
    lengths = [count(prompt) for prompt in prompts]
    fitting = sum(1 for n in lengths if n < context)
    return (f"prompts within the model's context of {context} tokens: {fitting}/{len(lengths)} "
            f"(longest {max(lengths, default=0)}, median "
            f"{sorted(lengths)[len(lengths) // 2] if lengths else 0})")


def usable(rows: list[dict]) -> list[dict]:
    """The rows a model can be scored on: searched, broadcast and summarised."""
    return [r for r in rows if "search" in r and r.get("baseline") and "broadcast" in r
            and "summary" in r]


def labelled_after(rows: list[dict], first: int) -> set[str]:
    """The test TUs of `rows` that the seeded test sample (llmcc.train.labels) ranks after its
    `first`: those a larger sample added, which choices made on the first never saw."""
    from llmcc.train.labels import sample_rank

    ranked = sorted((r for r in rows if r["split"] == "test"),
                    key=lambda r: sample_rank(r["language"], r["tu"]))
    return {r["tu"] for r in ranked[first:]}


def split_rows(every: list[dict], split: str, after: int = 0) -> list[dict]:
    """The usable rows of `split` among `every` (of the test split, with `after`, only those
    `labelled_after` the first `after`)."""
    late = labelled_after(every, after) if after else None
    return [r for r in usable(every) if r["split"] == split and (late is None or r["tu"] in late)]


class HeldSplit(NamedTuple):
    """A split of the committed dataset ready to score: pool rows, each TU's summary, and the
    broadcast lists (their texts) the rows' sizes stand for."""
    pool: list[dict]
    summaries: list[dict]
    texts: list[str]


def held_split(directory: str, split: str, after: int = 0) -> HeldSplit:
    """The usable TUs of `split` in the dataset at `directory` (see `split_rows`)."""
    registry = labelled.read_lists(directory)
    indices = registry["broadcast"]
    rows = split_rows(labelled.read_all(directory), split, after)
    texts = [registry["lists"][i] for i in indices]
    return HeldSplit(runnable(as_pool_rows(rows, indices, False), texts),
                     [r["summary"] for r in rows], texts)


def forest_ranker(grown) -> Ranker:
    """The Ranker of a forest (llmcc.advisor.forest.Forest), choosing as a compile does."""
    return lambda summary, k, min_gain: [grown.lists[i]
                                         for i in grown.choose(summary, k, min_gain)]


def evaluate(directory: str, split: str, rank: Ranker, held_directory: str | None = None,
             count: Callable[[str], int] | None = None, context: int = 0,
             after: int = 0, name: str = "model") -> str:
    """Every table for `split` of the dataset in `directory` (of the test split, with `after`,
    only the TUs `labelled_after` those), or for the TUs recorded in `held_directory` (a
    user's records labelled by `llmcc-ctl label`) when given; with `count`, whether their prompts
    fit `context`."""
    registry = labelled.read_lists(directory)
    indices = registry.get("broadcast", [])
    texts = [registry["lists"][i] for i in indices]
    every = labelled.read_all(directory)
    rows = usable(every)
    train = runnable(as_pool_rows([r for r in rows if r["split"] == "train"], indices, False),
                     texts)
    if held_directory is None:
        held_rows = split_rows(every, split, after)
    else:
        split = os.path.basename(os.path.abspath(held_directory))
        # the TUs recorded there (a replay removes those its project no longer compiles), or
        # every labelled one where there are labels alone (bench/half_package.py)
        recorded = {name[:-3] for name in os.listdir(held_directory) if name.endswith(".bc")}
        held_rows = [r for r in usable(labelled.read_all(os.path.join(held_directory, "labels")))
                     if not recorded or r["tu"] in recorded]
    if not held_rows or not train or not indices:
        raise ValueError(f"no train TUs and no {split} TUs with broadcast sizes")
    held = runnable(as_pool_rows(held_rows, indices, False), texts)
    summaries = [r["summary"] for r in held_rows]
    orders = model_orders(summaries, texts, rank)
    # greedy ranks incrementally: its top k are the first k of its top max(KS)
    popular = greedy(train, len(indices), max(KS))
    twins = [alike(row, summary) for row, summary in zip(held, summaries, strict=True)]
    fits = [] if count is None else [fits_line([to_prompt(s) for s in summaries], count,
                                               context)]
    return "\n\n".join([
        *fits,
        table(train, held, orders, popular, split, name),
        adaptive_table(held, summaries, texts, rank, orders[3], name=name),
        *(group_table(held, twins, orders, popular, [r[key] for r in held_rows], key,
                      name=name)
          for key in ("language", "package"))])


def main(model: str, directory: str, split: str, held_directory: str | None,
         threads: int, after: int = 0, forest: str | None = None) -> int:
    """`llmcc-ctl eval`: the tables for `model` (or with `forest`, that forest file), ranking
    each TU as a compile would."""
    from llmcc.advisor import AdvisorError
    from llmcc.advisor.model_runtime import ModelError, ModelRuntime, prompt_text

    try:
        if forest is not None:
            from llmcc.advisor.forest import Forest

            print(evaluate(directory, split, forest_ranker(Forest.load(forest)), held_directory,
                           after=after, name="forest"))
            return 0
        with ModelRuntime(model, threads) as runtime:
            def count(prompt: str) -> int:
                return len(runtime.tokenize(prompt_text(prompt), special=True))

            print(evaluate(directory, split, model_ranker(runtime), held_directory, count,
                           runtime.n_ctx, after))
    except (ModelError, AdvisorError, ValueError) as err:
        print(f"llmcc-ctl eval: {err}", file=sys.stderr)
        return 1
    return 0
