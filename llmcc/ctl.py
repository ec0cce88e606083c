"""`llmcc-ctl`: stats, explain, doctor, clear, config, id, tune, server, serve, eval, train,
label."""

from __future__ import annotations

import argparse
import json
import os
import sys

from llmcc import __version__, config, events


def _settings() -> config.Settings:
    try:
        return config.load()
    except config.ConfigError as err:
        sys.exit(f"llmcc-ctl: {err}")


def summarise(totals: dict) -> dict:
    """Pure: the figures `stats` shows, from the raw totals."""
    outcome = {name: totals.get("outcome_" + name, 0) for name in
               (events.PASSTHROUGH, events.DIRECT_HIT, events.HIT, events.REMOTE_HIT,
                events.MISS, events.FALLBACK)}
    baseline, final = totals.get("baseline_size", 0), totals.get("size", 0)
    return {
        "compiles": totals.get("compiles", 0),
        "intercepted": outcome[events.DIRECT_HIT] + outcome[events.HIT]
        + outcome[events.REMOTE_HIT] + outcome[events.MISS],
        "hits_direct": outcome[events.DIRECT_HIT],
        "hits": outcome[events.HIT],
        "remote_hits": outcome[events.REMOTE_HIT],
        "misses": outcome[events.MISS],
        "fallbacks": outcome[events.FALLBACK],
        "passthrough": outcome[events.PASSTHROUGH],
        "baseline_bytes": baseline,
        "bytes": final,
        "bytes_saved": baseline - final,
        "percent_saved": round(100.0 * (baseline - final) / baseline, 3) if baseline else 0.0,
        "seconds": round(totals.get("seconds", 0.0), 3),
    }


def cmd_stats(args: argparse.Namespace) -> int:
    figures = summarise(events.read_totals(config.cache_dir(_settings())))
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        for name, value in figures.items():
            print(f"{name.replace('_', ' '):<16} {value}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from llmcc.cache import CacheError
    from llmcc.cache.disk import DiskCache

    settings = _settings()
    cache = DiskCache(config.cache_dir(settings), settings.cache_size)
    path = os.path.abspath(args.path)
    try:  # an object, or else a source: the object built from it most recently
        record = cache.get("explain", path) or _explain_by_source(cache, path)
    except CacheError as err:
        sys.exit(f"llmcc-ctl: {err}")
    if record is None:
        print(f"llmcc-ctl: no decision recorded for {args.path}", file=sys.stderr)
        return 1
    chosen = record["passes"] or "clang's own pipeline (no candidate was smaller)"
    saved = record["baseline_size"] - record["size"]
    print(f"source:   {record['source']}\nkey:      {record['key']}\nadvisor:  {record['advisor']}")
    print(f"chosen:   {chosen}")
    print(f"size:     {record['size']} bytes (clang: {record['baseline_size']}, saved {saved})")
    for tried in record["tried"]:
        label = tried["passes"] or "<clang pipeline>"
        outcome = tried["error"] or f"{tried['size']} bytes"
        print(f"  tried {label}: {outcome} ({tried['seconds']:.3f}s)")
    return 0


def _explain_by_source(cache, source: str) -> dict | None:
    for key in cache.keys("explain"):
        record = cache.get("explain", key)
        if record and record["source"] == source:
            return record
    return None


def cmd_doctor(args: argparse.Namespace) -> int:
    from llmcc.advisor import AdvisorError, load_advisor
    from llmcc.cache import CacheError
    from llmcc.cache.disk import DiskCache
    from llmcc.toolchain import ToolchainError, check_tools, default_clang

    settings = _settings()
    problems = 0
    try:
        tools = check_tools(default_clang(settings.clang, os.environ.get("PATH", ""),
                                          frozenset()), settings.opt)
        print(f"ok   clang {tools.clang}: {tools.version}\nok   opt   {tools.opt}")
        print(_doctor_worker(tools))
        print(_doctor_fork_server(settings, tools))
    except ToolchainError as err:
        print(f"FAIL toolchain: {err}")
        problems += 1
    directory = config.cache_dir(settings)
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, ".doctor-probe")
        with open(probe, "w") as handle:
            handle.write("ok")
        os.unlink(probe)
        cache = DiskCache(directory, settings.cache_size)
        print(f"ok   cache {directory} ({cache.volume() / 1e6:.1f} MB used, "
              f"limit {settings.cache_size / 2**30:.1f} GiB)")
    except (OSError, CacheError) as err:
        print(f"FAIL cache {directory}: {err}")
        problems += 1
    if settings.cache_url:
        from llmcc.cache.shared import SharedCache, redacted

        try:
            SharedCache(settings.cache_url, None, []).ping()
            print(f"ok   shared cache {redacted(settings.cache_url)}")
        except Exception as err:  # noqa: BLE001 - whatever the client raises, say it
            print(f"FAIL shared cache {redacted(settings.cache_url)}: {type(err).__name__}: {err}")
            problems += 1
    try:
        advisor = load_advisor(settings)
        print(f"ok   advisor {settings.advisor} ({advisor.identity}), "
              f"{settings.candidates} candidates per TU, none expected to save under "
              f"{settings.min_gain:g}%")
    except AdvisorError as err:
        print(f"FAIL advisor: {err}")
        problems += 1
    problems += _doctor_model(settings)
    return 1 if problems else 0


GPU_BUILD = ('CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-binary '
             'llama-cpp-python llama-cpp-python')


def _doctor_worker(tools) -> str:
    """Whether compiles load LLVM once (llvm_worker) or run llvm-dis and opt for each step."""
    from llmcc import llvm_worker
    from llmcc.toolchain import StepFailed, llvm_version

    instead = "llvm-dis and opt run once per step instead"
    library = llvm_worker.library_beside(tools.opt)
    if library is None:
        return f"note LLVM worker: no libLLVM beside {tools.opt}; {instead}"
    try:
        llvm_worker.Worker(library, llvm_version(tools.version), os.devnull, 10).close()
    except (llvm_worker.Unavailable, StepFailed) as err:
        return f"note LLVM worker: {err}; {instead}"
    return f"ok   LLVM worker {library}: loaded once per compile"


def _doctor_fork_server(settings, tools) -> str:
    """Whether compiles are forked from a per-user server (llmcc.forkserver), and its pid."""
    from llmcc import forkserver
    from llmcc.advisor.client import server_pid
    from llmcc.runtime_dir import Unusable

    instead = "each compile imports llmcc and loads LLVM itself"
    if not settings.fork_server:
        return f"note fork server: off (LLMCC_FORK_SERVER=0); {instead}"
    try:
        path = forkserver.socket_path(tools.opt, dict(os.environ))
    except Unusable as err:
        return f"note fork server: {err}; {instead}"
    pid = server_pid(path)
    if pid is None:
        return "ok   fork server: none running; the next compile llmcc decides starts one"
    return f"ok   fork server {path}: pid {pid}"


def _doctor_model(settings) -> int:
    """The model file and what this llama.cpp can do with it; 1 if the model advisor is on
    and cannot work."""
    from llmcc.advisor.model import model_path
    from llmcc.advisor.model_runtime import ModelError, ModelRuntime

    path = model_path(settings)
    try:
        with ModelRuntime(path, 1, settings.gpu_layers) as runtime:
            chosen = "to cover each other" if runtime.coverage else \
                "by likelihood alone (the file has no coverage table)"
            members = f", an ensemble of {len(runtime.members) + 1} models" \
                if runtime.members else ""
            print(f"ok   model {path}: {len(runtime.lists)} candidate pass lists, chosen "
                  f"{chosen}, context {runtime.n_ctx}{members}")
    except ModelError as err:
        needed = settings.advisor == "model"
        print(f"{'FAIL' if needed else 'note'} model: {err}")
        return int(needed)
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        print(f"ok   GPU offload: available, {settings.gpu_layers} layers offloaded "
              "(LLMCC_GPU_LAYERS)")
    else:
        print(f"note GPU offload: this llama-cpp-python runs on the CPU only"
              f"{' (LLMCC_GPU_LAYERS is ignored)' if settings.gpu_layers else ''}; for an "
              f"NVIDIA GPU rebuild it: {GPU_BUILD}")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    from llmcc.cache import CacheError
    from llmcc.cache.disk import DiskCache

    settings = _settings()
    directory = config.cache_dir(settings)
    try:
        removed = f"{DiskCache(directory, settings.cache_size).clear()} cache entries"
    except CacheError:  # damaged beyond opening: start afresh
        DiskCache.remove(directory)
        removed = "a damaged cache"
    events.reset(directory)
    print(f"removed {removed} and the statistics")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings()
    print(f"# config file: {config.config_path(dict(os.environ))}")
    for setting in config.SETTINGS:
        value = settings.values[setting.name]
        if isinstance(value, frozenset):
            value = "".join(sorted(value))
        print(f"{setting.name:<12} = {value!s:<24} # {settings.origins[setting.name]}")
    return 0


def identity_line(settings: config.Settings) -> str:
    """What decides llmcc's output besides the IR: for ccache's compiler_check."""
    from llmcc.advisor import AdvisorError, advisor_identity
    from llmcc.toolchain import ToolchainError, check_tools, default_clang

    try:
        advisor = advisor_identity(settings)
    except AdvisorError as err:
        advisor = f"broken ({err})"
    try:
        clang = check_tools(default_clang(settings.clang, os.environ.get("PATH", ""),
                                          frozenset()), settings.opt).version
    except ToolchainError as err:
        clang = f"broken ({err})"
    levels = "".join(sorted(settings.levels))
    return (f"llmcc {__version__} advisor={advisor} candidates={settings.candidates} "
            f"min_gain={settings.min_gain:g} levels={levels} disable={int(settings.disable)} "
            f"{clang}")


def cmd_id(args: argparse.Namespace) -> int:
    print(identity_line(_settings()))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """Autotune one compile with the search advisor; the result lands in the decision cache."""
    from llmcc import cli
    from llmcc.progress import StatusLine, bar

    if args.compiler_args[:1] == ["--"]:
        args.compiler_args = args.compiler_args[1:]
    os.environ.update(LLMCC_ADVISOR="search", LLMCC_SEARCH_BUDGET=str(args.budget),
                      LLMCC_SEARCH_SECONDS=str(args.seconds))
    best = [None]
    line = StatusLine()

    def progress(count: int, result) -> None:
        if result.size is not None and (best[0] is None or result.size < best[0]):
            best[0] = result.size
        line.show(f"{bar(count, args.budget)} {count}/{args.budget} "
                  f"best {best[0] if best[0] is not None else '-'} bytes")

    code = cli.main(["llmcc", *args.compiler_args], "c++" if args.cxx else "c", progress)
    line.finish()
    if code == 0 and args.compiler_args:
        output = _output_of(args.compiler_args)
        if output:
            return cmd_explain(argparse.Namespace(path=output))
    return code


def _output_of(compiler_args: list[str]) -> str | None:
    from llmcc.invocation import Compile, classify

    inv = classify(compiler_args, frozenset("123sz"))
    return inv.output if isinstance(inv, Compile) else None


def cmd_server(args: argparse.Namespace) -> int:
    """The per-user servers compiles start: model servers (llmcc.advisor.client) and fork
    servers (llmcc.forkserver)."""
    import psutil

    from llmcc.advisor import client

    try:
        if args.action == "stop":
            stopped = client.stop_servers()
            print(f"stopped {len(stopped)} server{'s' * (len(stopped) != 1)}")
            return 0
        running = client.servers()
        forking = [(path, pid) for path in client.sockets(("forkserver-",))
                   if (pid := client.server_pid(path)) is not None]
    except client.ServerError as err:
        sys.exit(f"llmcc-ctl: {err}")
    if not running:
        print("no model server is running")
    for path, health in running:
        print(f"{path}\n  pid {health.get('pid')}, model {health.get('model')}, "
              f"{health.get('rss', 0) / 1e6:.1f} MB, {health.get('requests')} requests")
    if not forking:
        print("no fork server is running")
    for path, pid in forking:
        try:
            rss = psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue
        print(f"{path}\n  pid {pid}, fork server, {rss / 1e6:.1f} MB")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The model for other machines' compiles (LLMCC_SERVER=http://host:port), in the
    foreground: the per-user server's code on TCP."""
    from llmcc.advisor.model import model_path
    from llmcc.advisor.model_runtime import ModelError
    from llmcc.advisor.server import serve

    settings = _settings()
    args.model = args.model or model_path(settings)
    gpu_layers = settings.gpu_layers if args.gpu_layers is None else args.gpu_layers
    try:
        serve(args.model, host=args.host, port=args.port, idle=0, threads=args.threads,
              gpu_layers=gpu_layers)
    except (ModelError, OSError) as err:
        sys.exit(f"llmcc-ctl: cannot serve {args.model}: {err}")
    return 0


def _recorded(directory: str, command: str) -> bool:
    """Whether `directory` holds TUs LLMCC_RECORD kept; exits if it is no directory."""
    if not os.path.isdir(directory):
        sys.exit(f"llmcc-ctl {command}: {directory} is not a directory")
    return any(name.endswith(".bc") for name in os.listdir(directory))


def _labelled(directory: str) -> bool:
    """Whether `directory` holds labels as `llmcc-ctl label` writes them (records or not:
    bench/half_package.py writes a dataset package's labels alone)."""
    from llmcc.train import labelled

    return os.path.exists(os.path.join(directory, "labels", labelled.LISTS_FILE))


def _replay_and_label(args: argparse.Namespace, settings: config.Settings, dataset: str) -> str:
    """The records of a project's compiles (llmcc.train.replay), labelled: where they are."""
    import hashlib

    from llmcc.config import cache_dir
    from llmcc.train import replay
    from llmcc.train.labels import label_records

    source = os.path.abspath(args.directory)
    records = args.records or os.path.join(
        cache_dir(settings), "eval", hashlib.sha256(source.encode()).hexdigest()[:12],
        os.path.basename(source))
    try:
        compiles = replay.find(source)
    except (OSError, ValueError) as err:
        sys.exit(f"llmcc-ctl eval: {err}")
    counts = replay.replay(compiles, records, dict(os.environ))
    print(f"{source}: {counts['compiles']} compiles replayed through llmcc, {counts['failed']} "
          f"failed; {counts['recorded']} TUs recorded in {records}", file=sys.stderr)
    if not counts["recorded"]:
        sys.exit(f"llmcc-ctl eval: no TU of {source} was recorded (a compile that fails, or "
                 "that is not one C or C++ file compiled to an object, records none)")
    label_records(records, args.jobs, args.budget, args.seconds, args.timeout, dataset)
    return records


def cmd_eval(args: argparse.Namespace) -> int:
    from llmcc.advisor.forest import FOREST_FILE
    from llmcc.advisor.model import model_path
    from llmcc.train import evaluate, labelled

    settings, dataset = _settings(), args.dataset or labelled.DATASET_DIR
    held = args.directory
    if held is not None and not _recorded(held, "eval") and not _labelled(held):
        held = _replay_and_label(args, settings, dataset)
    return evaluate.main(args.model or model_path(settings), dataset, args.split, held,
                         args.threads, args.after,
                         FOREST_FILE if args.forest is True else args.forest)


def cmd_train(fit_args: list[str]) -> int:
    """The llama (llmcc.train.fit), or with --forest the forest advisor's trees
    (llmcc.train.forest)."""
    growing = "--forest" in fit_args
    try:
        if growing:
            from llmcc.train import forest as trainer
        else:
            from llmcc.train import fit as trainer
    except ImportError as err:
        sys.exit(f"llmcc-ctl train: {err.name} is missing: pip install '.[train]' (torch on CPU, "
                 "scikit-learn)")
    if growing:
        fit_args = [arg for arg in fit_args if arg != "--forest"]
        return trainer.main(fit_args, prog="llmcc-ctl train --forest")
    return trainer.main(fit_args, prog="llmcc-ctl train")


def cmd_label(args: argparse.Namespace) -> int:
    from llmcc.train import labelled
    from llmcc.train.labels import label_records

    if not _recorded(args.directory, "label"):
        sys.exit(f"llmcc-ctl label: no recorded TU in {args.directory} (build with "
                 f"LLMCC_RECORD={args.directory} first)")
    print(label_records(args.directory, args.jobs, args.budget, args.seconds, args.timeout,
                        args.dataset or labelled.DATASET_DIR))
    return 0


def _labelling_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", type=int, default=120, help="search evaluations per TU")
    parser.add_argument("--seconds", type=float, default=120.0, help="search time cap per TU")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=30.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmcc-ctl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"llmcc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    stats = sub.add_parser("stats", help="compiles, hits, misses, bytes saved")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_stats)
    explain = sub.add_parser("explain", help="the decision for an object or source file")
    explain.add_argument("path")
    explain.set_defaults(func=cmd_explain)
    sub.add_parser("doctor", help="check clang, opt, cache and advisor").set_defaults(
        func=cmd_doctor)
    sub.add_parser("clear", help="empty the cache and the statistics").set_defaults(
        func=cmd_clear)
    sub.add_parser("config", help="effective settings and where each came from").set_defaults(
        func=cmd_config)
    sub.add_parser("id", help="one line for ccache's compiler_check").set_defaults(func=cmd_id)
    tune = sub.add_parser("tune", help="autotune one compile: llmcc-ctl tune -- -Oz -c x.c")
    tune.add_argument("--budget", type=int, default=200, help="evaluations (default 200)")
    tune.add_argument("--seconds", type=float, default=600, help="time limit (default 600)")
    tune.add_argument("--cxx", action="store_true", help="compile as C++ (llmcc++)")
    tune.add_argument("compiler_args", nargs=argparse.REMAINDER)
    tune.set_defaults(func=cmd_tune)
    server = sub.add_parser("server", help="the per-user model and fork servers: status, stop")
    server.add_argument("action", choices=("status", "stop"))
    server.set_defaults(func=cmd_server)
    serve = sub.add_parser("serve", help="serve the model over HTTP (LLMCC_SERVER elsewhere)")
    serve.add_argument("--model", help="GGUF file (default: the configured model)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on "
                       "(default 127.0.0.1; 0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=8080, help="default 8080; 0: any free one")
    serve.add_argument("--threads", type=int, default=1, help="llama.cpp threads (default 1)")
    serve.add_argument("--gpu-layers", type=int, help="layers on the GPU (default: configured)")
    serve.set_defaults(func=cmd_serve)
    evaluate = sub.add_parser("eval", help="the model against fixed lists on held-out TUs")
    evaluate.add_argument("directory", nargs="?", help="TUs recorded with LLMCC_RECORD=DIR "
                          "and labelled by `llmcc-ctl label DIR`, or a project: its "
                          "compile_commands.json, else its C/C++ sources, are compiled through "
                          "llmcc, recorded and labelled first (default: the dataset)")
    evaluate.add_argument("--model", help="GGUF file (default: the configured model)")
    evaluate.add_argument("--forest", nargs="?", const=True, metavar="FILE",
                          help="the forest advisor instead (default: the forest llmcc ships)")
    evaluate.add_argument("--split", default="test", choices=("test", "validation"))
    evaluate.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    evaluate.add_argument("--after", type=int, default=0, metavar="N",
                          help="test TUs the seeded sample ranks after its first N only: "
                          "those labelled later, which no choice made on the first N saw")
    evaluate.add_argument("--dataset",
                          help="train split and broadcast lists (default: llmcc's dataset)")
    evaluate.add_argument("--records", metavar="DIR", help="where a project's TUs are recorded "
                          "and labelled (default: under the cache directory)")
    _labelling_options(evaluate)
    evaluate.set_defaults(func=cmd_eval)
    # listed for --help; its options are fit's own, handed over before parsing (below)
    sub.add_parser("train", help="train the model on the dataset (--out FILE, --add DIR, ...; "
                   "--forest: the forest advisor's trees; "
                   "needs pip install '.[train]')")
    label = sub.add_parser("label", help="search and measure TUs recorded with LLMCC_RECORD")
    label.add_argument("directory")
    _labelling_options(label)
    label.add_argument("--dataset",
                       help="whose broadcast lists to measure (default: llmcc's dataset)")
    label.set_defaults(func=cmd_label)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        return cmd_train(argv[1:])
    args = parser.parse_args(argv)
    return args.func(args)
