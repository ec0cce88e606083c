"""Writing files so that a crash, Ctrl-C or a full disk never leaves a partial one."""

from __future__ import annotations

import os


def write_atomic(path: str, data: bytes, mode: int | None = None) -> None:
    """Write `path` so readers see the old file or the new one, never a part.

    The temporary file sits beside the target (same filesystem, so the rename is atomic) and is
    created exclusively (O_EXCL, O_NOFOLLOW), so a planted symlink is never followed. No
    `tempfile` import: this runs on the cache-hit path. Permissions follow
    the umask like any file the compiler creates, unless `mode` says otherwise.
    """
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.urandom(6).hex()}.llmcc-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
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
