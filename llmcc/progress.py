"""One status line on stderr for long runs a person watches (`llmcc-ctl tune`, the corpus build).

On a terminal the line is rewritten in place; into a log or a pipe only each finished line is
written, so captured output stays readable instead of filling with carriage returns.
"""

from __future__ import annotations

import sys
from typing import TextIO


def bar(done: int, total: int, width: int = 30) -> str:
    """`[#####.....]`: how much of `total` is done."""
    filled = width * min(done, total) // max(total, 1)
    return f"[{'#' * filled}{'.' * (width - filled)}]"


class StatusLine:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.text = ""

    def show(self, text: str) -> None:
        """Replace the line's text."""
        if self.live:
            self.stream.write("\r" + text + " " * max(0, len(self.text) - len(text)))
            self.stream.flush()
        self.text = text

    def finish(self, text: str | None = None) -> None:
        """End the line (with `text`, if given), so that the next one starts below it."""
        if text is not None:
            self.show(text)
        if self.text:
            self.stream.write("\n" if self.live else self.text + "\n")
            self.stream.flush()
        self.text = ""
