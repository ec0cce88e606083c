"""The `llmcc` and `llmcc++` commands: the rest of llmcc is imported inside a Ctrl-C guard.

A console script imports its entry point's module before calling it. Were that llmcc.cli, a
Ctrl-C during the import (tens of milliseconds) would print a Python traceback where clang
prints nothing; this module imports nothing at the top, so what is left unguarded is Python's
own start-up.
"""

import sys


def _run(language: str) -> None:
    try:
        from llmcc.cli import main

        code = main(sys.argv, language)
    except KeyboardInterrupt:  # Ctrl-C before or after a compile step: quietly, like clang
        code = 130  # 128 + SIGINT, as a shell reports it
    sys.exit(code)


def cc() -> None:
    _run("c")


def cxx() -> None:
    _run("c++")
