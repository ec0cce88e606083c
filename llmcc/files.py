"""Writing files so that a crash, Ctrl-C or a full disk never leaves a partial one."""

from __future__ import annotations

import errno
import os
import stat

MAX_SYMLINKS = 40  # links Linux follows in one lookup before open(2) fails with ELOOP


def write_atomic(path: str, data: bytes, mode: int | None = None) -> None:
    """Write `path` so readers see the old file or the new one, never a part.

    The temporary file sits beside the target (same filesystem, so the rename is atomic) and is
    created exclusively (O_EXCL, O_NOFOLLOW), so a planted symlink is never followed. No
    `tempfile` import: this runs on the cache-hit path. Permissions follow
    the umask like any file the compiler creates, unless `mode` says otherwise.
    A symlink at `path` itself is replaced, as clang replaces one at `-o`.
    """
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.urandom(6).hex()}.llmcc-tmp")
    try:  # the open too: a Ctrl-C raised as it returns must not leave the file it created
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as err:
        taken = isinstance(err, FileExistsError) and err.filename2 is None  # by another: not ours
        if not taken:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise


def link_target(path: str) -> str:
    """The file open(2) on `path` reaches: each symlink followed in turn, as the kernel does.

    A relative link is read from its own directory, and the result is not normalised, so `..`
    after a symlinked directory means what the kernel makes of it. A dangling link names the
    file open(O_CREAT) would create; a cycle fails with ELOOP, as open(2) does.
    """
    for _ in range(MAX_SYMLINKS + 1):
        try:
            target = os.readlink(path)
        except OSError as err:
            if err.errno in (errno.EINVAL, errno.ENOENT):  # not a link, or nothing there yet
                return path
            raise
        path = os.path.join(os.path.dirname(path), target)
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)


def write_through(path: str, data: bytes) -> None:
    """Write `path` where and as open(O_CREAT|O_TRUNC) would, but atomically where that is the same.

    This is how clang writes a depfile: through symlinks into their target (the links stay),
    into the existing file (its permissions stay, and its other hard links see the new text).
    The atomic rename lands on the target and keeps the permissions; only a file with other
    hard links is rewritten in place, since a rename would leave those names stale.
    """
    target = link_target(path)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        write_atomic(target, data)
        return
    if info.st_nlink > 1:
        fd = os.open(target, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return
    write_atomic(target, data, stat.S_IMODE(info.st_mode))
