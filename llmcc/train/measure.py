"""Measuring recorded TUs, the machinery every training stage shares: an evaluator that
measures a recorded TU exactly as its compile would, a resumable process-pool runner, and the
geometric-mean saving of a set of lists with clang's pipeline as the fallback."""

from __future__ import annotations

import json
import math
import os
import random
from multiprocessing import Pool

from llmcc.codegen_job import ask_clang
from llmcc.optimize import Evaluator
from llmcc.progress import StatusLine, bar
from llmcc.toolchain import check_tools, default_clang
from llmcc.train.dataset import owned_tus


def sample_tus(records: str, per_package: int, seed: int,
               packages: list[str] | None = None) -> list[tuple[str, str]]:
    """(package, bitcode path) pairs: up to `per_package` of each package's own TUs
    (`dataset.owned_tus`: a TU several packages recorded is sampled from one only)."""
    chosen = []
    for package, tus in sorted(owned_tus(records).items()):
        if packages and package not in packages:
            continue
        paths = [os.path.join(records, package, tu + ".bc") for tu in tus]
        random.Random(f"{seed}:{package}").shuffle(paths)  # stable as packages are added
        chosen.extend((package, path) for path in paths[:per_package])
    return chosen


def recorded_evaluator(bitcode: str, workdir: str, timeout: float) -> Evaluator:
    """An Evaluator for a TU saved by LLMCC_RECORD, measuring exactly as its compile would."""
    with open(bitcode[:-3] + ".json") as handle:
        meta = json.load(handle)
    tools = check_tools(default_clang("", os.environ.get("PATH", ""), frozenset()), "")
    codegen = tuple(meta["codegen"])
    return Evaluator(codegen, meta["pic"], tools, bitcode, workdir, timeout,
                     stop_after_failure=False,
                     codegen_job=lambda: ask_clang(tools.clang, codegen, workdir, timeout),
                     language=meta["language"])


def read_rows(path: str) -> list[dict]:
    """The result rows a run appended to `path` so far (none if it never ran)."""
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def run_appending(path: str, jobs: list, worker, processes: int) -> list[dict]:
    """Run `worker` over `jobs` in a process pool, appending each result row to `path` as it
    arrives, so a run that is stopped keeps everything it finished. Returns the new rows."""
    rows = []
    line = StatusLine()
    with open(path, "a") as out, Pool(processes) as workers:
        for n, row in enumerate(workers.imap_unordered(worker, jobs), 1):
            out.write(json.dumps(row) + "\n")
            out.flush()
            rows.append(row)
            line.show(f"{os.path.basename(path)}: {bar(n, len(jobs))} {n}/{len(jobs)}")
    line.finish()
    return rows


def run_resumable(path: str, jobs: list, worker, processes: int) -> dict[str, dict]:
    """`run_appending` for the jobs whose TU (job[1]'s file name) has no row in `path` yet.
    Returns every row, old and new, by TU."""
    done = {row["tu"]: row for row in read_rows(path)}
    todo = [job for job in jobs if os.path.basename(job[1]) not in done]
    done.update((row["tu"], row) for row in run_appending(path, todo, worker, processes))
    return done


def best_size(row: dict, chosen: list[int]) -> int:
    """Smallest verified size among the chosen lists, never above the baseline."""
    sizes = [row["sizes"][i] for i in chosen if row["sizes"][i] is not None]
    return min([row["baseline"], *sizes])


def tu_log_ratios(rows: list[dict], chosen: list[int]) -> list[float]:
    """Each TU's log size ratio to clang when it tries `chosen`; an empty object (baseline 0)
    cannot shrink and has none."""
    return [math.log(best_size(row, chosen) / row["baseline"]) for row in rows
            if row["baseline"] > 0]


def geomean_saving(rows: list[dict], chosen: list[int]) -> float:
    """Geometric-mean size reduction vs clang over TUs, in percent."""
    logs = tu_log_ratios(rows, chosen)
    if not logs:
        return 0.0
    return 100.0 * (1.0 - math.exp(sum(logs) / len(logs)))


def greedy(rows: list[dict], pool_size: int, count: int) -> list[int]:
    """Pool indices in the order that adds the most saving at each step."""
    chosen: list[int] = []
    for _ in range(count):
        candidates = [i for i in range(pool_size) if i not in chosen]
        if not candidates:
            break
        best = max(candidates, key=lambda i: geomean_saving(rows, [*chosen, i]))
        if geomean_saving(rows, [*chosen, best]) <= geomean_saving(rows, chosen):
            break
        chosen.append(best)
    return chosen
