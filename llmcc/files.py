"""Writing files so that a crash, Ctrl-C or a full disk never leaves a partial one."""

from __future__ import annotations

import os


def write_atomic(path: str, data: bytes, mode: int | None = None) -> None:
    """Write `path` so readers see the old file or the new one, never a part.

    The temporary file sits beside the target (same filesystem, so the rename is atomic) and is
    created exclusively by mkstemp, so a planted symlink is never followed. Permissions follow
    the umask like any file the compiler creates, unless `mode` says otherwise.
    """
    import tempfile

    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".llmcc-tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
