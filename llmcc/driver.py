"""One intercepted compile, end to end: direct-mode lookup, frontend, decision cache, candidate
search, atomic write.

Anything that goes wrong here raises `UsePlainClang`; the caller then runs the real clang on
the original arguments, so the user sees exactly what plain clang says and does.
"""

from __future__ import annotations

import os
import sys
import time

from llmcc import __version__, direct, events
from llmcc.advisor import AdvisorError, advisor_identity, load_advisor
from llmcc.cache import CacheError
from llmcc.files import link_target, write_atomic, write_through
from llmcc.toolchain import StepFailed, ToolchainError, Tools, check_tools, run

MAX_SHOWN = 10  # candidates kept in a decision for `llmcc-ctl explain`, smallest first


class UsePlainClang(Exception):
    """Let the real clang compile: `warn` says whether the user should hear why."""

    def __init__(self, reason: str, warn: bool) -> None:
        super().__init__(reason)
        self.reason, self.warn = reason, warn


class NotAHit(Exception):
    """`compile_tu(ctx, hits_only=True)` found no direct-mode hit: the compile is yet to do."""


class Context:
    """Everything one compile needs from outside: settings, tools, cache, environment. (A plain
    class, not a namedtuple: importing collections would cost every cache hit ~3 ms.)"""

    __slots__ = ("args", "asking_cpu", "cache", "clang", "environ", "inv", "progress",
                 "settings", "shared", "stderr_tty", "warnings")

    def __init__(self, inv, args: list[str], clang: str, settings, environ: dict[str, str],
                 cache, stderr_tty: bool, warnings: list[str], progress=None,
                 shared=None, asking_cpu: float = 0.0) -> None:
        self.inv = inv  # the Compile
        self.args = args  # the expanded arguments, as the user gave them
        self.clang, self.settings, self.environ = clang, settings, environ
        self.cache = cache  # a backend from llmcc.cache, or None when unavailable
        self.stderr_tty = stderr_tty
        self.warnings = warnings  # a list the compile appends its warnings to
        self.progress = progress  # called with (count, result) as the search advisor measures
        self.shared = shared  # a cache.shared.SharedCache when LLMCC_CACHE_URL names one
        # in a child of the fork server: the CPU the asking process took before it asked
        self.asking_cpu = asking_cpu

    def cache_get(self, namespace: str, key: str) -> dict | None:
        if self.cache is None:
            return None
        try:
            return self.cache.get(namespace, key)
        except CacheError as err:
            self.warnings.append(str(err))
            return None

    def cache_put(self, namespace: str, key: str, value: dict) -> None:
        if self.cache is None:
            return
        try:
            self.cache.put(namespace, key, value)
        except CacheError as err:
            self.warnings.append(str(err))


def tools_for(ctx: Context) -> Tools:
    """Check clang and opt once per version of their files: the versions go into every key."""
    from llmcc.breaker import tools_key
    from llmcc.toolchain import opt_beside

    if not os.path.exists(ctx.clang):
        raise UsePlainClang(f"cannot find {ctx.clang}", warn=True)
    key = tools_key(ctx.clang, ctx.settings.opt or opt_beside(ctx.clang))
    known = ctx.cache_get("tools", key)
    if known:
        return Tools(known["clang"], known["opt"], known["version"])
    try:
        # the user's step time-out: the first compile on a cold disk loads all of LLVM
        tools = check_tools(ctx.clang, ctx.settings.opt, ctx.settings.timeout)
    except ToolchainError as err:
        raise UsePlainClang(str(err), warn=True) from None
    ctx.cache_put("tools", key, {"clang": tools.clang, "opt": tools.opt, "version": tools.version})
    return tools


def _diagnostic_flags(ctx: Context) -> list[str]:
    """Clang colours and wraps diagnostics only on a terminal; its stderr is now a pipe."""
    if not ctx.stderr_tty or any("color-diagnostics" in a or "diagnostics-color" in a
                                 for a in ctx.args):
        return []
    return ["-fcolor-diagnostics"]


def _write_outputs(ctx: Context, obj: bytes, depfile: bytes | None) -> None:
    """Put the object and the depfile where plain clang puts them, both checked before either
    is written.

    Clang renames its object over `-o` (a symlink there is replaced) but opens its depfile and
    writes through a symlink into its target (`files.write_through`). What clang would refuse
    or do differently (no directory, a device or directory, a file it may not write, a symlink
    cycle) is left to plain clang, which says so in its own words.
    """
    writes = [(ctx.inv.output, obj, write_atomic)]
    if depfile is not None:
        writes.append((ctx.inv.depfile, depfile, write_through))
    for path, _, write in writes:
        try:
            target = link_target(path) if write is write_through else path
        except OSError as err:
            raise UsePlainClang(f"cannot follow {path}: {err.strerror}", warn=False) from None
        if not os.path.isdir(os.path.dirname(target) or "."):
            raise UsePlainClang(f"no directory for {path}", warn=False)
        if os.path.exists(target) and not os.path.isfile(target):
            # `-o /dev/null`: clang writes into it; renaming over it would replace the device
            raise UsePlainClang(f"{path} is not a regular file", warn=False)
        if os.path.exists(target) and not os.access(target, os.W_OK):
            raise UsePlainClang(f"{path} is not writable", warn=False)  # clang refuses it
    for path, data, write in writes:
        try:
            write(path, data)
        except OSError as err:
            # e.g. a full disk or no permission: plain clang reports it in its own words
            raise UsePlainClang(f"cannot write {path}: {err.strerror}", warn=False) from None


def _record(directory: str, bitcode: bytes, ctx: Context) -> None:
    """LLMCC_RECORD: keep the TU's IR and how to generate code for it (training data).

    Named by what decides its measurements, the IR and the code generation flags, and nothing
    of llmcc's own (version, advisor): the same TU gets the same name in every future corpus.
    """
    import json

    record_key = direct.digest(b"\0".join([bitcode, repr((ctx.inv.codegen, ctx.inv.pic)).encode()]))
    os.makedirs(directory, exist_ok=True)
    write_atomic(os.path.join(directory, record_key + ".bc"), bitcode)
    meta = {"source": os.path.abspath(ctx.inv.source), "cwd": os.getcwd(),
            "language": ctx.inv.language, "level": ctx.inv.level, "pic": ctx.inv.pic,
            "codegen": list(ctx.inv.codegen)}
    write_atomic(os.path.join(directory, record_key + ".json"), json.dumps(meta, indent=1).encode())


def measure_baseline(ctx: Context, tools: Tools, bitcode_path: str, workdir: str):
    """(evaluator, clang's own object for the TU): what every candidate is measured against."""
    from llmcc.optimize import BaselineUnusable, Evaluator

    evaluator = Evaluator(ctx.inv.codegen, ctx.inv.pic, tools, bitcode_path, workdir,
                          ctx.settings.timeout, codegen_job=lambda: codegen_job(ctx, tools, workdir),
                          language=ctx.inv.language)
    try:
        return evaluator, evaluator.baseline()
    except BaselineUnusable as err:
        raise UsePlainClang(f"clang's pipeline on the IR: {err}", warn=False) from None


def codegen_job(ctx: Context, tools: Tools, workdir: str) -> list[str] | None:
    """The `clang -cc1` command that generates the candidates' objects together
    (llmcc.codegen_job), asked of clang once per clang, code generation flags and directory;
    None where there is none. StepFailed (not kept) if clang could not say."""
    import json

    from llmcc import codegen_job as job
    from llmcc.breaker import tools_key

    # the driver's own input besides the flags: CCC_OVERRIDE_OPTIONS edits its arguments
    key = direct.digest(json.dumps([tools_key(tools.clang), list(ctx.inv.codegen), os.getcwd(),
                                    ctx.environ.get("CCC_OVERRIDE_OPTIONS")]).encode())
    known = ctx.cache_get("codegen-job", key)
    if known is not None:
        return known["job"]
    answer = job.ask_clang(tools.clang, ctx.inv.codegen, workdir, ctx.settings.timeout)
    ctx.cache_put("codegen-job", key, {"job": answer})
    return answer


def _timed(stages: dict[str, float], stage: str, started: float) -> None:
    """Add the time since `started` to `stages[stage]`: where a compile's time went (the event
    log's `stages`, which bench/build.py adds up)."""
    stages[stage] = stages.get(stage, 0.0) + time.time() - started


def decide(ctx: Context, tools: Tools, evaluator, baseline, bitcode_path: str, ir_key: str,
           stages: dict[str, float], only: tuple | None = None) -> tuple[dict, dict]:
    """The baseline against the advisor's candidates (or the lists in `only`, each a validated
    pass list); returns (decision, event fields). Adds the advisor's and the candidates' time
    to `stages`.

    A tool failure stops the candidates (see optimize.Evaluator) and is reported in the event
    as `tool_failure`: the decision is then still the smallest verified object, but not a fact
    about the TU, so the caller must not cache it.
    """
    from llmcc.optimize import choose
    from llmcc.passes import to_text

    k = ctx.settings.candidates
    advisor = None
    started = time.time()
    if only is None:
        try:
            advisor = load_advisor(ctx.settings, evaluator.disassemble)
        except AdvisorError as err:
            raise UsePlainClang(str(err), warn=True) from None
    if advisor is not None and hasattr(advisor, "tune"):
        _timed(stages, "advisor", started)
        started = time.time()
        results = advisor.tune(evaluator, seed=ir_key, progress=ctx.progress)
    else:
        results = []
        lists = only if only is not None else advisor.suggest(bitcode_path, k) if k else []
        ctx.warnings.extend(getattr(advisor, "warnings", ()))
        _timed(stages, "advisor", started)
        started = time.time()
        evaluator.prepare(lists)
        for passes in lists:
            results.append(evaluator.candidate(passes))
            if evaluator.stopped:
                break
    _timed(stages, "candidates", started)
    best = choose(baseline, results)
    shown = sorted(results, key=lambda r: (r.size is None, r.size or 0))[:MAX_SHOWN]
    tried = [r.summary() for r in [baseline, *shown]]
    decision = {"passes": None if best.passes is None else to_text(best.passes),
                "baseline_size": baseline.size, "size": best.size, "object": best.object,
                "tried": tried}
    extra = {"tried": tried, "evaluated": len(results)}
    if evaluator.tool_failure is not None:
        extra["tool_failure"] = evaluator.tool_failure
    if getattr(advisor, "failure", None):
        extra["advisor_failure"] = advisor.failure
    return decision, extra


def _from_shared_cache(ctx: Context, tools: Tools, evaluator, baseline, bitcode_path: str,
                       ir_key: str, stages: dict[str, float]) -> tuple[dict | None, dict]:
    """A decision another machine made, measured here before use: (decision, event fields) if
    its list gives here exactly what it promised, else (None, {}) and the TU is decided as if
    nothing had been shared. A hostile or stale entry costs one candidate, never bytes."""
    from llmcc.passes import PassListError, parse

    shared = ctx.shared.get(ir_key) if ctx.shared is not None else None
    if shared is None:
        return None, {}
    try:
        only = () if shared["passes"] is None else (parse(shared["passes"]),)
    except PassListError:
        return None, {}
    decision, extra = decide(ctx, tools, evaluator, baseline, bitcode_path, ir_key, stages,
                             only=only)
    promised = (shared["baseline_size"], shared["size"], shared["passes"])
    if "tool_failure" in extra or promised != (decision["baseline_size"], decision["size"],
                                               decision["passes"]):
        return None, {}
    return decision, {**extra, "shared": True}


def _decide_and_cache(ctx: Context, tools: Tools, bitcode_path: str, workdir: str,
                      ir_key: str, stages: dict[str, float]) -> tuple[dict, dict]:
    """A decision from the shared cache, or `decide`'s (shared in turn), guarded by the tools'
    breaker; cached only when no tool failed. Fills the baseline's, advisor's and candidates'
    `stages`."""
    from llmcc import breaker

    key = breaker.tools_key(tools.clang, tools.opt)
    state = ctx.cache_get("breaker", key)
    if breaker.is_open(state, time.time()):
        until = time.strftime("%H:%M", time.localtime(state["until"]))
        raise UsePlainClang(f"opt or code generation failed in {state['failures']} compiles in "
                            f"a row; not calling them again until {until} or until they change",
                            warn=True)
    started = time.time()
    evaluator, baseline = measure_baseline(ctx, tools, bitcode_path, workdir)
    _timed(stages, "baseline", started)
    try:
        decision, extra = _from_shared_cache(ctx, tools, evaluator, baseline, bitcode_path,
                                             ir_key, stages)
        if decision is None:
            decision, extra = decide(ctx, tools, evaluator, baseline, bitcode_path, ir_key,
                                     stages)
            if _cacheable(extra) and ctx.shared is not None:
                ctx.shared.put(ir_key, decision, advisor_identity(ctx.settings))
    finally:
        evaluator.close()
    failure = extra.get("tool_failure")
    new_state = breaker.after_compile(state, failure is not None, time.time())
    if new_state is not None:
        ctx.cache_put("breaker", key, new_state)
    if _cacheable(extra):
        ctx.cache_put("ir", ir_key, decision)
    elif failure is not None:
        ctx.warnings.append(f"{failure}; kept the smallest object verified before it and did "
                            "not cache this TU's decision")
    else:
        ctx.warnings.append(f"{extra['advisor_failure']}; did not cache this TU's decision")
    return decision, extra


def _cacheable(extra: dict) -> bool:
    """A decision is a fact about the TU only when every tool and the advisor worked."""
    return "tool_failure" not in extra and "advisor_failure" not in extra


def compile_tu(ctx: Context, hits_only: bool = False) -> dict:
    """Compile one TU; returns the log event. Raises UsePlainClang to hand over to clang, and
    with `hits_only` NotAHit where a direct-mode hit does not finish it (llmcc.cli asks the
    fork server then: a hit costs less in this process than a fork of that one)."""
    started = time.time()
    # `startup`: the CPU starting Python and llmcc took, before the compile (process_time, not
    # os.times, whose 10 ms ticks read a fast start as none at all); in a child of the fork
    # server, the asking process's and the child's
    startup = time.process_time() + ctx.asking_cpu
    inv, settings = ctx.inv, ctx.settings
    try:
        advisor_id = advisor_identity(settings)
    except AdvisorError as err:
        raise UsePlainClang(str(err), warn=True) from None
    tools = tools_for(ctx)
    identity = [__version__, tools.version, advisor_id, str(settings.candidates),
                str(settings.min_gain)]
    frontend_extra = _diagnostic_flags(ctx)
    event: dict = {"source": inv.source, "output": inv.output, "advisor": advisor_id}
    stages: dict[str, float] = {"startup": startup}

    call_key = None
    # Direct mode needs every header the frontend reads (CC_PRINT_HEADERS), and asking for that
    # makes clang list system headers in the depfile too: -MMD must not, so it skips direct mode.
    # Recording needs the frontend's IR, which a direct hit never makes.
    if (settings.direct_mode and ctx.cache is not None and not settings.record
            and (inv.depfile is None or inv.system_deps)):
        try:
            call_key = direct.call_key([ctx.clang, *identity, os.getcwd(), *frontend_extra,
                                        direct.file_digest(inv.source), *ctx.args], ctx.environ)
        except direct.Unrecordable:
            call_key = None
    manifest = ctx.cache_get("direct", call_key) if call_key else None
    if manifest:
        entry = direct.match(manifest["entries"])
        if entry:
            decision = entry["decision"]
            _write_outputs(ctx, decision["object"], entry["depfile"])
            sys.stderr.buffer.write(entry["stderr"])
            stages["total"] = time.time() - started
            return {**event, "outcome": events.DIRECT_HIT, "key": entry["ir_key"],
                    "passes": decision["passes"], "baseline_size": decision["baseline_size"],
                    "size": decision["size"], "stages": stages}
    if hits_only:
        raise NotAHit

    import tempfile  # not needed on a direct-mode hit

    with tempfile.TemporaryDirectory(prefix="llmcc-") as workdir:
        bitcode_path = os.path.join(workdir, "tu.bc")
        listing = os.path.join(workdir, "headers.txt")
        env = ctx.environ
        if call_key:
            env = {**ctx.environ, "CC_PRINT_HEADERS": "1", "CC_PRINT_HEADERS_FILE": listing}
        depfile_path = os.path.join(workdir, "tu.d")
        code, out, err = run([ctx.clang, *inv.frontend_args(bitcode_path, depfile_path),
                              *frontend_extra], timeout=None, env=env)
        stages["frontend"] = time.time() - started
        if code != 0 or out:
            # the user's own compile error (or something unusual): clang reports it itself
            raise UsePlainClang(f"the frontend exited {code}", warn=False)
        with open(bitcode_path, "rb") as handle:
            bitcode = handle.read()
        ir_key = direct.digest(b"\0".join([bitcode, *(s.encode() for s in identity),
                                           repr((inv.codegen, inv.pic)).encode()]))
        event["key"] = ir_key
        if settings.record:
            _record(settings.record, bitcode, ctx)
        decision = ctx.cache_get("ir", ir_key)
        cacheable = True
        if decision is None:
            search_started = time.time()
            try:
                decision, extra = _decide_and_cache(ctx, tools, bitcode_path, workdir, ir_key,
                                                    stages)
            except StepFailed as exc:
                raise UsePlainClang(str(exc), warn=True) from None
            stages["search"] = time.time() - search_started
            event.update(extra, outcome=events.REMOTE_HIT if extra.pop("shared", False)
                         else events.MISS)
            cacheable = _cacheable(extra)
        else:
            event["outcome"] = events.HIT
        depfile = None
        if inv.depfile is not None:
            with open(depfile_path, "rb") as handle:
                depfile = handle.read()
        _write_outputs(ctx, decision["object"], depfile)
        if call_key and cacheable:
            _remember_headers(ctx, call_key, manifest, listing, started, ir_key, err, depfile,
                              decision)
    summary = {"passes": decision["passes"], "baseline_size": decision["baseline_size"],
               "size": decision["size"]}
    ctx.cache_put("explain", os.path.abspath(inv.output),
                  {**summary, "source": os.path.abspath(inv.source), "key": ir_key,
                   "tried": decision["tried"], "advisor": advisor_id})
    sys.stderr.buffer.write(err)
    stages["total"] = time.time() - started
    return {**event, **summary, "stages": {k: round(v, 4) for k, v in stages.items()}}


def _remember_headers(ctx: Context, call_key: str, manifest: dict | None, listing: str,
                      started: float, ir_key: str, stderr: bytes, depfile: bytes | None,
                      decision: dict) -> None:
    """Add this compile to the call's manifest, with what a direct hit writes and reports (the
    object a second time: a hit then reads this one entry and nothing else)."""
    try:
        with open(listing) as handle:
            headers = direct.headers_read(handle.read())
        entry = {"headers": direct.record(headers, started), "ir_key": ir_key,
                 "stderr": stderr, "depfile": depfile,
                 "decision": {name: decision[name]
                              for name in ("object", "passes", "baseline_size", "size")}}
    except (OSError, direct.Unrecordable):
        return
    entries = direct.add_entry(manifest["entries"] if manifest else [], entry)
    ctx.cache_put("direct", call_key, {"entries": entries})
