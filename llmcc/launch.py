"""The `llmcc` and `llmcc++` commands: the rest of llmcc is imported inside a Ctrl-C guard.

A console script imports its entry point's module before calling it. Were that llmcc.cli, a
Ctrl-C during the import (tens of milliseconds) would print a Python traceback where clang
prints nothing; this module imports nothing at the top, so what is left unguarded is Python's
own start-up.
"""

import sys

_interrupts_lost: list[BaseException] = []


def _keep_lost_interrupt(unraisable) -> None:
    """A Ctrl-C that lands in a callback CPython cannot raise from (an import lock's weakref
    callback) is printed as "Exception ignored" and lost. Keep it quietly instead: the compile
    then ends as an interrupted one (its outputs are written whole or not at all either way)."""
    if issubclass(unraisable.exc_type, KeyboardInterrupt):
        _interrupts_lost.append(unraisable.exc_value)
    else:
        sys.__unraisablehook__(unraisable)


def exit_code(call) -> int:
    """call()'s exit status, with a Ctrl-C before or after a compile step ending it quietly,
    like clang (also a child of the fork server, llmcc.forkserver)."""
    sys.unraisablehook = _keep_lost_interrupt
    try:
        code = call()
    except KeyboardInterrupt:
        code = 130  # 128 + SIGINT, as a shell reports it
    return 130 if _interrupts_lost else code


def _run(language: str) -> None:
    def call() -> int:
        from llmcc.cli import main

        return main(sys.argv, language, fork_server=True)

    sys.exit(exit_code(call))


def cc() -> None:
    _run("c")


def cxx() -> None:
    _run("c++")
