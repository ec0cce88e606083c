"""Model speed: what asking the model costs a compile, as compiles ask it.

    .venv/bin/python bench/model_speed.py [--model FILE] [--tus 200]

For labelled TUs of the committed dataset (their stored summaries, rendered as a compile renders
them), one at a time: the time from prompt to pass lists through the per-user server (client,
round trip, model), with the server at its default threads; the server's resident memory; the
first call of a fresh user (server start and model load included); and loading the model in the
compiling process instead. An ensemble (`llmcc-ctl train --members N`) is measured whole: every
member answers each request. `--untrained` measures a model of the default size with untrained
weights (speed depends on size, not on weights; needs the train extra), for before a model is
shipped; `--size DIM,LAYERS,HIDDEN,HEADS` gives it another size. Times are milliseconds,
medians and 95th percentiles.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter

from llmcc.advisor import client
from llmcc.advisor.model import DEFAULT_MODEL, SERVER_THREADS, file_digest
from llmcc.advisor.model_runtime import (
    ModelRuntime,
    answer_tables,
    answers,
    prompt_text,
    top_count,
)
from llmcc.summary import to_prompt
from llmcc.train import labelled

K = 3
BROADCAST_LISTS = 101  # llmcc.train.labels: LLVM's -Oz and the 100 most frequent winners


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def untrained_model(path: str, prompts: list[str], size: str | None) -> str:
    """A model of the default Config (or `size`), its tokenizer trained on `prompts`, weights
    untrained."""
    from llmcc.passes import parse
    from llmcc.train.export import export
    from llmcc.train.fit import candidates_of
    from llmcc.train.model import Config, Llama
    from llmcc.train.tokenizer import PassTokenizer

    registry = labelled.read_lists()
    # before the dataset has a broadcast set: as many lists, its likely members
    winners = Counter(r["search"]["passes"] for r in labelled.read_all()
                      if r.get("search", {}).get("passes"))
    candidates = candidates_of(registry) or [parse(text) for text, _ in
                                             winners.most_common(BROADCAST_LISTS)]
    config = Config()
    if size:
        dim, layers, hidden, heads = map(int, size.split(","))
        config = Config(dim=dim, layers=layers, hidden=hidden, heads=heads, kv_heads=heads)
    tokenizer = PassTokenizer.train(prompts, config.vocab_size, candidates)
    model = Llama(dataclasses.replace(config, vocab_size=tokenizer.vocab_size))
    # a coverage table of the right shape: choosing lists by it costs the same whatever it holds
    coverage = [[0] * len(candidates) for _ in candidates]
    return export(model, tokenizer, path, dataset_sha256="untrained", command="bench",
                  coverage=coverage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--tus", type=int, default=200)
    parser.add_argument("--untrained", action="store_true")
    parser.add_argument("--size", metavar="DIM,LAYERS,HIDDEN,HEADS",
                        help="with --untrained: a model of this size, not the default")
    args = parser.parse_args()
    rows = [r for r in labelled.read_all() if "summary" in r]
    random.Random(0).shuffle(rows)
    prompts = [to_prompt(r["summary"]) for r in rows[:args.tus]]
    work = tempfile.mkdtemp(prefix="llmcc-model-speed-", dir="/tmp")
    os.environ["XDG_RUNTIME_DIR"] = work  # a fresh user: no server running yet
    try:
        model = args.model if not args.untrained else \
            untrained_model(os.path.join(work, "m.gguf"), prompts, args.size)
        digest = file_digest(model, None)
        lists, coverage, _ = answer_tables(model)

        def ask(prompt: str) -> list:
            text = prompt_text(prompt)
            top = client.ask_per_user_server(
                model, digest, lambda address, timeout: client.complete_top(
                    address, text, top_count(K, len(lists)), timeout),
                threads=SERVER_THREADS, gpu_layers=0, idle=60)
            return answers(top, K, lists, coverage)

        start = time.perf_counter()
        ask(prompts[0])
        first = (time.perf_counter() - start) * 1000
        times = []
        for prompt in prompts:
            start = time.perf_counter()
            ask(prompt)
            times.append((time.perf_counter() - start) * 1000)
        [(_, health)] = client.servers()
        start = time.perf_counter()
        with ModelRuntime(model) as runtime:
            runtime.rank(prompts[0], K)
            members = len(runtime.members)
            size = sum(os.path.getsize(r.path) for r in (runtime, *runtime.members)) / 1e6
        in_process = (time.perf_counter() - start) * 1000
        client.stop_servers()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    untrained = f", untrained model of size {args.size or 'default'}" if args.untrained else ""
    ensemble = f", an ensemble of {members + 1}" if members else ""
    print(f"{len(prompts)} TUs of the committed dataset, k = {K}, {os.cpu_count()} cores, "
          f"server threads {SERVER_THREADS}{untrained}, model {size:.2f} MB{ensemble}:")
    print("| | value |\n|---|---:|")
    print(f"| model time per TU through the per-user server, median | "
          f"{statistics.median(times):.1f} ms |")
    print(f"| ... p95 | {percentile(times, 0.95):.1f} ms |")
    print(f"| server resident memory | {health['rss'] / 2**20:.0f} MiB |")
    print(f"| first call, server start included | {first:.0f} ms |")
    print(f"| the same in the compiling process (load + one TU) | {in_process:.0f} ms |")


if __name__ == "__main__":
    sys.exit(main())
