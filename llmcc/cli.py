"""What `llmcc` and `llmcc++` do (launch.py is their entry point; the PATH shims run them).

The passthrough path is kept cheap: classify argv with the options table and `os.execv` the
real clang, without importing subprocess, diskcache or anything heavier.
"""

from __future__ import annotations

import os
import sys

from llmcc import config, events
from llmcc.invocation import Passthrough, classify, expand_response_files
from llmcc.options import SOURCE_LANGUAGES
from llmcc.toolchain import ToolchainError, cxx_name, default_clang, find_program, is_clang_name

SHIM_VARIABLE = "LLMCC_SHIM"  # set by shims/llmcc-shim to the path it was invoked as


def _warn(message: str, program: str) -> None:
    """Say why llmcc hands this call over, naming the program that compiles it instead."""
    sys.stderr.write(f"llmcc: warning: {message}; compiling with plain "
                     f"{os.path.basename(program)}\n")
    sys.stderr.flush()


def _exec(program: str, argv0: str, args: list[str]) -> int:
    """Become the real compiler: same arguments, same streams, same exit code."""
    try:
        os.execv(program, [argv0, *args])
    except OSError as err:
        sys.stderr.write(f"llmcc: error: cannot run {program}: {err.strerror}\n")
        return 127
    return 0  # not reached


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        return handle.read()


def _self_paths(environ: dict[str, str]) -> frozenset[str]:
    """Real paths that are llmcc itself, never to be taken for the real compiler."""
    paths = {os.path.realpath(sys.argv[0])}
    if environ.get(SHIM_VARIABLE):
        paths.add(os.path.realpath(environ[SHIM_VARIABLE]))
    return frozenset(paths)


def _looks_like_compiler(arg: str) -> bool:
    """Launcher form `llmcc clang-19 -c x.c`: the first argument names a program, not a file."""
    return not arg.startswith(("-", "@")) and os.path.splitext(arg)[1] not in SOURCE_LANGUAGES


def locate_compiler(argv: list[str], language: str, settings: config.Settings | None,
                    environ: dict[str, str]) -> tuple[str, str, list[str]]:
    """(program to run, its argv[0], the compiler arguments) for the three ways to call llmcc.

    A shim named after a clang (clang, clang-19, clang++) runs the next real program of that
    name on PATH. A shim with a generic name (cc, c++, gcc, g++) runs the configured clang, or
    its C++ driver for a name with `++`, for every call, links and `--version` included: the
    next `cc` on PATH is usually gcc, and llmcc improves only clang's pipeline.
    """
    path_env = environ.get("PATH", os.defpath)
    skip = _self_paths(environ)
    shim = environ.pop(SHIM_VARIABLE, None)
    args = argv[1:]
    if shim:
        name = os.path.basename(shim)
        if is_clang_name(name):
            found = find_program(name, path_env, skip)
            if found is None:
                raise ToolchainError(f"no real {name} on PATH after the llmcc shim {shim}")
            return found, name, args
        language = "c++" if "++" in name else "c"
    elif args and _looks_like_compiler(args[0]):
        found = find_program(args[0], path_env, skip)
        if found is not None:
            return found, args[0], args[1:]
    clang = default_clang(settings.clang if settings else "", path_env, skip)
    if language == "c++":
        clang = cxx_name(clang)
    return clang, clang, args


def main(argv: list[str], language: str, progress=None, fork_server: bool = False,
         run_plain=_exec, asking_cpu: float | None = None) -> int:
    """Compile as clang would; `progress` (from `llmcc-ctl tune`) watches a search.

    `fork_server` (the `llmcc` command): a compile llmcc decides is run by a child of this
    user's fork server where one answers (llmcc.forkserver). In that child (`asking_cpu`: the
    CPU seconds the asking process took; the event log says `fork_server`) `run_plain` tells
    the asking process to hand the call to plain clang."""
    environ = os.environ
    environ_at_start = dict(environ) if fork_server else environ
    settings = config_error = None
    try:
        settings = config.load(dict(environ))
    except config.ConfigError as err:
        config_error = err
    try:
        program, argv0, args = locate_compiler(argv, language, settings, environ)
    except ToolchainError as err:
        if config_error is not None:
            sys.stderr.write(f"llmcc: warning: {config_error}\n")
        sys.stderr.write(f"llmcc: error: {err}\n")
        return 127
    if config_error is not None:
        sys.stderr.write(f"llmcc: warning: {config_error}; passing calls to plain "
                         f"{os.path.basename(program)}\n")
    if settings is None or settings.disable:
        return run_plain(program, argv0, args)
    expanded = expand_response_files(args, _read_text)
    inv = classify(expanded, settings.levels)
    cache_dir = config.cache_dir(settings)
    if isinstance(inv, Passthrough):
        if progress is not None:
            sys.stderr.write(f"llmcc: this call is not a compile llmcc optimises: {inv.reason}\n")
            return 2
        events.count(cache_dir, {"outcome": events.PASSTHROUGH})
        _log(settings, {"outcome": events.PASSTHROUGH, "reason": inv.reason, "args": args})
        return run_plain(program, argv0, args)
    if fork_server and settings.fork_server and progress is None:
        reason = _intercept(inv, expanded, program, settings, cache_dir, hits_only=True)
        if reason is not MISSED:
            return 0 if reason is None else run_plain(program, argv0, args)
        from llmcc import forkserver
        from llmcc.toolchain import opt_beside

        status = forkserver.compile_in_server(argv, language, environ_at_start,
                                              settings.opt or opt_beside(program))
        if status is forkserver.Plain:
            return run_plain(program, argv0, args)
        if status is not None:
            return status
    reason = _intercept(inv, expanded, program, settings, cache_dir, progress, asking_cpu)
    if reason is None:
        return 0
    return run_plain(program, argv0, args)


def _log(settings: config.Settings, event: dict) -> None:
    if settings.log:
        events.log(settings.log, event)


MISSED = "no direct-mode hit"  # what _intercept(hits_only=True) says when it did nothing


def _intercept(inv, args: list[str], clang: str, settings: config.Settings,
               cache_dir: str, progress=None, asking_cpu: float | None = None,
               hits_only: bool = False) -> str | None:
    """Run the compile through llmcc; None when done, else why plain clang must do it. With
    `hits_only`, MISSED (and nothing logged or said) unless a direct-mode hit finished it."""
    import _signal  # what the signal module wraps, without the enum import it adds

    from llmcc import driver
    from llmcc.cache.disk import DiskCache

    # SIGTERM unwinds like Ctrl-C, so temporary files go and no partial output is left.
    _signal.signal(_signal.SIGTERM, lambda *_: sys.exit(128 + _signal.SIGTERM))
    warnings: list[str] = []
    # off: a sandbox (Bazel's) where the cache dir cannot be written
    cache = DiskCache(cache_dir, settings.cache_size) if settings.cache else None
    shared = None
    if settings.cache_url:
        from llmcc.cache.shared import SharedCache

        shared = SharedCache(settings.cache_url, cache, warnings)
    ctx = driver.Context(inv=inv, args=args, clang=clang, settings=settings,
                         environ=dict(os.environ), cache=cache,
                         stderr_tty=sys.stderr.isatty(), warnings=warnings, progress=progress,
                         shared=shared, asking_cpu=asking_cpu or 0.0)
    try:
        event = driver.compile_tu(ctx, hits_only)
        handed_over = None
    except driver.NotAHit:
        if cache is not None:
            cache.close()
        return MISSED  # its warnings, if any, are met again where the compile is done
    except driver.UsePlainClang as exc:
        event = {"source": inv.source, "output": inv.output, "outcome": events.FALLBACK,
                 "reason": exc.reason}
        if exc.warn:
            _warn(exc.reason, clang)
        handed_over = exc.reason
    except KeyboardInterrupt:
        sys.exit(130)  # temporary files are gone by now; the output was never half-written
    except Exception as exc:  # noqa: BLE001 - a bug of llmcc's must not break a build
        import traceback

        reason = f"internal error ({type(exc).__name__}: {exc}), please report it"
        event = {"source": inv.source, "output": inv.output, "outcome": events.FALLBACK,
                 "reason": reason, "traceback": traceback.format_exc()}
        _warn(reason, clang)
        handed_over = reason
    for message in dict.fromkeys(warnings):
        sys.stderr.write(f"llmcc: warning: {message}\n")
    events.count(cache_dir, {k: event.get(k) for k in ("outcome", "baseline_size", "size")}
                 | {"seconds": event.get("stages", {}).get("total")})
    _log(settings, event if asking_cpu is None else {**event, "fork_server": True})
    if cache is not None:
        cache.close()
    return handed_over
