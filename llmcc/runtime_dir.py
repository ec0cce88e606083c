"""The user's private directory for the sockets of per-user servers (model servers, the fork
server): only its owner may ask them. Standard library only, and light: every compile that asks
a server calls it."""

from __future__ import annotations

import os
import stat


class Unusable(Exception):
    """No private directory can be had: asking a server is not safe."""


def temporary_directory() -> str:
    """The directory tempfile.gettempdir() chooses, without importing tempfile (8 ms here, in
    every compile that asks the fork server where XDG_RUNTIME_DIR is unset, as in containers and
    CI): the first of $TMPDIR, $TEMP, $TMP, /tmp, /var/tmp, /usr/tmp this user can write in,
    else the working directory."""
    for candidate in (*(os.environ.get(name) for name in ("TMPDIR", "TEMP", "TMP")),
                      "/tmp", "/var/tmp", "/usr/tmp"):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return os.path.abspath(candidate)
    return os.getcwd()


def runtime_dir() -> str:
    """$XDG_RUNTIME_DIR/llmcc, else llmcc-UID in the temporary directory; created private."""
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if base and os.path.isdir(base):
        path = os.path.join(base, "llmcc")
    else:
        path = os.path.join(temporary_directory(), f"llmcc-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as err:
        raise Unusable(f"cannot create {path}: {err.strerror}") from None
    status = os.lstat(path)
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.getuid():
        raise Unusable(f"{path} is not a directory of this user's")
    if status.st_mode & 0o077:
        raise Unusable(f"{path} is open to other users (mode {status.st_mode & 0o777:o}): "
                       f"refusing to use it")
    return path


def inode(path: str) -> int | None:
    """The inode of the socket at `path`, None if there is none: a server leaves once its socket
    is another's, and is killed only while it still is its own."""
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None
