"""Compiles forked from a per-user process that has llmcc's compile path already loaded.

A compile llmcc decides in a fresh process spends tens of milliseconds of CPU beside its tools
on things that are the same every time: Python's imports (diskcache and sqlite3, subprocess,
tempfile, the summary), the forest file, and in the LLVM worker libLLVM's relocations, as much
as a plain `clang -Oz -c` of a small TU takes (bench/fork_server.py). The fork server pays it
once: it imports and loads all of it, and for each compile that asks (one a direct-mode hit did
not finish: a hit costs less in its own process than a fork of the server's), forks a child that
takes on the asking process's working directory, environment, umask, resource limits, CPU
affinity, ignored and blocked signals (never the server's, which are those of whatever compile
started it) and standard streams (passed over the socket), then runs
`llmcc.cli.main` as that process would have. The asking process forwards the signals a terminal
or make sends it (Ctrl-C, SIGTERM, SIGHUP, SIGQUIT, Ctrl-Z and fg) to the child's process group
and exits with the child's status, or execs plain clang when the child says plain clang must
compile.

Only the same user with the same groups, in the same namespaces, cgroup and root directory (the
same view of files and processes), with the same file-name encoding and scheduling, is served: a
sandbox or container would see the server's world otherwise; nor is a process with LD_PRELOAD,
whose libraries a child would lack. Anything else, no server, or a server that fails before the
compile starts means the compile runs in its own process, as it did before; a child that dies
mid-compile leaves the socket removed (the next compile starts a new server) and the compile
rerun in the asking process, and a server that does not answer in time is killed. The socket is
named after llmcc's files, the Python that runs it and its PYTHON* settings, the LLVM it
preloads and the asking process's priority, so an upgrade, another LLVM or a `nice make` gets
another server; an idle server exits.

The asking side runs in every compile llmcc decides, so it imports modules written in C and
nothing heavier.

    python -m llmcc.forkserver --socket PATH --opt OPT [--idle SECONDS]
"""

from __future__ import annotations

import _signal  # what the signal module wraps, without the enum import it adds
import marshal
import os
import sys

IDLE_SECONDS = 600  # a server exits after this long without a compile
START_RETRY = 60  # seconds: a server that was started is not started again this soon
ANSWER_TIMEOUT = 5.0  # seconds the asking process waits for its child to start
WATCH_INTERVAL = 1.0  # seconds between the server's looks at idleness and its socket
SOCKET_PREFIX = "forkserver-"
# the signals that end a compile: the asking process forwards them to its child (whose ignored
# and blocked signals are the asking process's)
ENDING_SIGNALS = (_signal.SIGHUP, _signal.SIGINT, _signal.SIGQUIT, _signal.SIGTERM)
LIMITS = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
          "RLIMIT_MEMLOCK", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_STACK")
NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")
# the modules a compile llmcc decides imports, and the forest: loaded once, in the server
PRELOAD = ("llmcc.cli", "llmcc.driver", "llmcc.optimize", "llmcc.summary", "llmcc.direct",
           "llmcc.advisor.forest", "llmcc.advisor.popular", "llmcc.llvm_worker",
           "llmcc.codegen_job", "llmcc.cache.disk", "llmcc.breaker", "diskcache", "sqlite3",
           "tempfile", "subprocess", "json", "hashlib", "array")


class Plain:
    """The child's answer: plain clang must compile this (the asking process execs it)."""


class HandOver(Exception):
    """Raised in the child where `llmcc.cli.main` would exec plain clang."""


# --- the asking process ---------------------------------------------------------------------

def socket_path(opt: str, environ: dict[str, str]) -> str:
    """This user's socket for this llmcc, this Python and its settings, the LLVM of `opt`, and
    this process's scheduling (a server started by a `nice make` serves only such builds:
    a child cannot raise its priority) (llmcc.runtime_dir.Unusable if there is no private
    directory)."""
    from zlib import crc32

    from llmcc.runtime_dir import runtime_dir

    package = os.path.dirname(os.path.abspath(__file__))
    parts = [sys.executable, sys.version, os.path.realpath(opt) if opt else "",
             *sorted(f"{k}={v}" for k, v in environ.items() if k.startswith("PYTHON")),
             f"{os.getpriority(os.PRIO_PROCESS, 0)} {os.sched_getscheduler(0)}"]
    for directory, subdirectories, files in os.walk(package):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for name in sorted(files):
            status = os.stat(os.path.join(directory, name))
            parts.append(f"{directory}/{name}:{status.st_size}:{status.st_mtime_ns}")
    text = "\n".join(parts).encode(errors="surrogateescape")
    digest = f"{crc32(text):08x}{crc32(text[::-1]):08x}"
    return os.path.join(runtime_dir(), f"{SOCKET_PREFIX}{digest}.sock")


def where() -> dict:
    """What must be the same for a child of the server to act as this process would: user,
    groups, namespaces, cgroup, root directory, file-name encoding, scheduling."""
    namespaces = {}
    for name in NAMESPACES:
        try:
            namespaces[name] = os.readlink(f"/proc/self/ns/{name}")
        except OSError:
            namespaces[name] = None
    try:
        with open("/proc/self/cgroup", "rb") as handle:
            cgroup = handle.read()
    except OSError:
        cgroup = None
    root = os.stat("/")
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
            "egid": os.getegid(), "groups": sorted(os.getgroups()), "namespaces": namespaces,
            "cgroup": cgroup, "root": (root.st_dev, root.st_ino),
            "file names": (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()),
            "scheduling": (os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0),
                           os.sched_getparam(0).sched_priority)}


def differs(theirs: dict, ours: dict) -> str | None:
    """Why a child with `ours` may not compile for a process with `theirs` (where()), if so."""
    for key, value in ours.items():
        if theirs.get(key) != value:
            return f"another {key}"
    if None in ours["namespaces"].values() or ours["cgroup"] is None:
        return "no /proc to compare namespaces"
    return None


def _request(argv: list[str], language: str, environ: dict[str, str]) -> dict:
    import resource
    import time

    umask = os.umask(0)
    os.umask(umask)
    ignored = sorted(number for number in _signal.valid_signals()
                     if _signal.getsignal(number) == _signal.SIG_IGN)
    blocked = sorted(int(number) for number in _signal.pthread_sigmask(_signal.SIG_BLOCK, []))
    return {"argv": argv, "language": language, "env": environ, "cwd": os.getcwd(),
            "cwd_id": tuple(os.stat(".")[1:3]), "cpus": sorted(os.sched_getaffinity(0)),
            "umask": umask, "ignored": ignored, "blocked": blocked, "streams": _open_streams(),
            "where": where(),
            "limits": {name: resource.getrlimit(getattr(resource, name)) for name in LIMITS},
            "text": [(s.encoding, s.errors, s.line_buffering) if s is not None else None
                     for s in (sys.stdout, sys.stderr)], "cpu": time.process_time()}


def _send(sock, message: object, fds: list[int] = ()) -> None:
    data = marshal.dumps(message)
    data = len(data).to_bytes(8, "little") + data
    if fds:
        import _socket

        rights = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)
        sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        data = data[sent:]
    if data:
        sock.sendall(data)


def _receive(sock, received: bytes = b"") -> object:
    """The next message, of which `received` holds the first bytes (those that came with the
    streams); EOFError if the other side closed first."""
    def exactly(size: int) -> bytes:
        nonlocal received
        while len(received) < size:
            chunk = sock.recv(size - len(received))
            if not chunk:
                raise EOFError
            received += chunk
        data, received = received[:size], received[size:]
        return data

    return marshal.loads(exactly(int.from_bytes(exactly(8), "little")))


def compile_in_server(argv: list[str], language: str, environ: dict[str, str], opt: str):
    """Have the compile run by a child of this user's fork server, with `environ` (this
    process's environment as it started): its exit status, Plain, or None where this process
    must compile itself (no server answered; one is started)."""
    import _socket

    from llmcc.runtime_dir import Unusable, inode

    if environ.get("LD_PRELOAD") or environ.get("LD_AUDIT"):
        return None  # this process has libraries the server's children would lack
    try:
        path = socket_path(opt, environ)
    except (OSError, Unusable):  # no private directory, or llmcc's files moving: no server
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(ANSWER_TIMEOUT)
        connected = inode(path)
        try:
            sock.connect(path)
        except TimeoutError:
            _kill_hung(path, connected)
            return None
        except OSError:
            _start(path, opt)
            return None
        try:
            request = _request(argv, language, environ)
            _send(sock, request, request["streams"])
            answer = _receive(sock)
        except TimeoutError:
            _kill_hung(path, connected)
            return None
        except (OSError, EOFError, ValueError):
            return None
        if "pid" not in answer:
            return None  # declined: another user, namespace or cgroup
        sock.settimeout(None)
        return _wait(sock, answer["pid"], path, connected)
    finally:
        sock.close()


def _kill_hung(path: str, connected: int | None) -> None:
    """The server did not accept or answer in time: it hangs (or is stopped). Kill it, so that
    it costs one compile this wait and the next compile starts another."""
    from llmcc.advisor.client import kill_hung

    kill_hung(path, connected)


def _open_streams() -> list[int]:
    """Which of stdin, stdout and stderr this process has open (the child closes the rest)."""
    streams = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            streams.append(fd)
        except OSError:
            pass
    return streams


def _wait(sock, pid: int, path: str, connected: int):
    """Let the child go, forward signals to it, and return what it answers (see
    compile_in_server)."""
    received: list[int] = []

    def forward(number: int, _frame) -> None:
        received.append(number)
        try:
            if number == _signal.SIGTSTP:  # stop the child, then this process, as Ctrl-Z does
                os.killpg(pid, _signal.SIGSTOP)
                os.kill(os.getpid(), _signal.SIGSTOP)
            else:
                os.killpg(pid, number)
        except ProcessLookupError:
            pass

    previous = {}
    for number in (*ENDING_SIGNALS, _signal.SIGTSTP, _signal.SIGCONT):
        if _signal.getsignal(number) != _signal.SIG_IGN:
            previous[number] = _signal.signal(number, forward)
    try:
        _send(sock, "go")
        answer = _receive(sock)
    except (OSError, EOFError, ValueError):
        answer = None
    finally:
        for number, handler in previous.items():
            _signal.signal(number, handler)
    if isinstance(answer, dict) and "exit" in answer:
        return answer["exit"]
    if answer == "plain":
        return Plain
    ended = [n for n in received if n not in (_signal.SIGTSTP, _signal.SIGCONT)]
    if ended:  # the child ended as the signal told it to: so does this process
        if ended[-1] == _signal.SIGINT:
            raise KeyboardInterrupt
        _signal.signal(ended[-1], _signal.SIG_DFL)
        os.kill(os.getpid(), ended[-1])
    try:  # the child died mid-compile: the next compile starts another server
        if os.stat(path).st_ino == connected:
            os.unlink(path)
    except OSError:
        pass
    return None


def _start(path: str, opt: str) -> None:
    """Start a server for `path` in the background, unless one was started in the last
    START_RETRY seconds (it may still be loading, or it cannot start here)."""
    import time

    marker = path + ".started"
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            if time.time() - os.stat(marker).st_mtime < START_RETRY:
                return
            os.unlink(marker)
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            return  # another compile is starting one right now
    except OSError:
        return
    os.close(fd)
    import subprocess

    log = os.path.join(os.path.dirname(path), "forkserver.log")
    try:
        with open(log, "ab") as stderr:
            subprocess.Popen([sys.executable, "-m", "llmcc.forkserver", "--socket", path,
                              "--opt", opt], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=stderr, cwd="/",
                             start_new_session=True)
    except OSError:
        pass


# --- the server -----------------------------------------------------------------------------

def preload(opt: str) -> None:
    """Import what a compile imports, read the forest, and load the LLVM library of `opt`
    (a compile's LLVM worker, forked from the child, then finds it loaded). A forest or
    library that cannot be loaded is left to each compile, which says why as it would alone."""
    import ctypes
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    from llmcc.advisor import AdvisorError
    from llmcc.advisor.forest import FOREST_FILE, Forest
    from llmcc.llvm_worker import initialise_targets, library_beside

    try:
        Forest.load(FOREST_FILE)
    except AdvisorError:
        pass
    library = library_beside(opt) if opt else None
    try:
        if library:
            initialise_targets(ctypes.CDLL(library), ("TargetInfo", "Target", "TargetMC"))
    except OSError:
        pass


def serve(path: str, opt: str, idle: float) -> None:
    """Listen on `path` (one server per path: a lock), fork a child per connection, and leave
    when idle, when the socket is no longer this server's, or on SIGTERM."""
    import fcntl
    import signal
    import socket
    import time

    from llmcc.runtime_dir import inode

    # held for the server's life (".lock" is what llmcc-ctl server stop holds while it stops)
    lock = open(path + ".serving", "a")  # noqa: SIM115
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server has this socket
    preload(opt)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    temporary = f"{path}.{os.getpid()}.tmp"
    listener.bind(temporary)
    listener.listen(128)
    os.rename(temporary, path)
    ours = os.stat(path).st_ino
    with open(path + ".pid", "w") as handle:
        handle.write(str(os.getpid()))
    try:
        os.unlink(path + ".started")
    except OSError:
        pass
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGCHLD, lambda *_: _reap())
    listener.settimeout(WATCH_INTERVAL)
    last = time.monotonic()
    try:
        while True:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                connection = None
            if connection is None:
                if time.monotonic() - last > idle or inode(path) != ours:
                    return
                continue
            last = time.monotonic()
            if _peer_uid(connection) != os.getuid():
                connection.close()
                continue
            pid = os.fork()
            if pid == 0:
                listener.close()
                lock.close()  # the server keeps its lock: its own descriptor stays open
                _child(connection)
            connection.close()
    finally:
        if inode(path) == ours:
            for leftover in (path, path + ".pid", path + ".serving"):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass


def _reap() -> None:
    """Collect the children that have ended, at once (their CPU then counts as the server's
    children's, which bench/build.py reads)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def _peer_uid(connection) -> int:
    import socket
    import struct

    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                        struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1]


def _child(connection) -> None:
    """One compile, in a child of the server; never returns."""
    import signal
    import socket

    try:
        os.setpgid(0, 0)  # the asking process signals this group: the child and its tools
        for number in (signal.SIGTERM, signal.SIGCHLD):  # the server's, not a compile's
            signal.signal(number, signal.SIG_DFL)
        connection.settimeout(ANSWER_TIMEOUT)
        # the streams come with the first bytes: at most the length, read with them
        first, fds, _, _ = socket.recv_fds(connection, 8, 3)
        request = _receive(connection, first)
        why = differs(request["where"], where())
        if why is None:
            why = _take_on(request, fds)
        for fd in fds:
            os.close(fd)
        if why is not None:
            _send(connection, {"declined": why})
            return
        _send(connection, {"pid": os.getpid()})
        if _receive(connection) != "go":
            return
        connection.settimeout(None)
        answer = _run(request)
        _send(connection, answer)
    except BaseException:  # noqa: BLE001, S110 - no answer: the asking process compiles itself
        pass
    finally:
        os._exit(0)


def _take_on(request: dict, fds: list[int]) -> str | None:
    """Become the asking process: its directory, environment, umask, limits, ignored and
    blocked signals, streams. Why not, if it cannot be done exactly."""
    import io
    import resource
    import signal

    if len(fds) != len(request["streams"]):
        return "streams lost"
    try:
        os.chdir(request["cwd"])
    except OSError as err:
        return f"cannot enter {request['cwd']}: {err.strerror}"
    if tuple(os.stat(".")[1:3]) != tuple(request["cwd_id"]):
        return "another working directory"
    try:
        for name, limits in request["limits"].items():
            number = getattr(resource, name)
            if resource.getrlimit(number) != tuple(limits):
                resource.setrlimit(number, tuple(limits))
    except (ValueError, OSError) as err:
        return f"cannot take on the resource limits: {err}"
    if sorted(os.sched_getaffinity(0)) != request["cpus"]:
        try:
            os.sched_setaffinity(0, request["cpus"])
        except OSError as err:
            return f"cannot take on the CPU affinity: {err.strerror}"
    os.environ.clear()
    os.environ.update(request["env"])
    import locale
    import tempfile
    import time

    time.tzset()  # TZ
    try:
        locale.setlocale(locale.LC_CTYPE, "")
    except locale.Error:
        return "cannot take on the locale"
    tempfile.tempdir = None  # TMPDIR: found again when first asked
    os.umask(request["umask"])
    # the signals the asking process ignores and blocks, not those the server inherited from the
    # compile that started it (a background job of a script ignores Ctrl-C; nohup, SIGHUP): a
    # Ctrl-C forwarded to this child and its tools would be lost
    for number in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:
        if number in request["ignored"]:
            signal.signal(number, signal.SIG_IGN)
        elif signal.getsignal(number) == signal.SIG_IGN:
            signal.signal(number, signal.default_int_handler if number == signal.SIGINT
                          else signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, request["blocked"])
    for fd in (0, 1, 2):
        if fd in request["streams"]:
            os.dup2(fds[request["streams"].index(fd)], fd)
        else:
            os.close(fd)
    for fd, text in ((1, request["text"][0]), (2, request["text"][1])):
        if text is not None:
            encoding, errors, line_buffering = text
            stream = io.TextIOWrapper(io.BufferedWriter(io.FileIO(fd, "w", closefd=False)),
                                      encoding=encoding, errors=errors,
                                      line_buffering=line_buffering)
            setattr(sys, "stdout" if fd == 1 else "stderr", stream)
    sys.argv = list(request["argv"])
    return None


def _run(request: dict) -> object:
    """The compile, as the `llmcc` command runs it: {"exit": status}, or "plain"."""
    from llmcc import cli, launch

    def plain(*_) -> int:
        raise HandOver

    try:
        code = launch.exit_code(lambda: cli.main(request["argv"], request["language"],
                                                 run_plain=plain, asking_cpu=request["cpu"]))
    except HandOver:
        return "plain"
    except SystemExit as end:
        code = end.code if isinstance(end.code, int) else 0 if end.code is None else 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    return {"exit": code}


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--opt", default="")
    parser.add_argument("--idle", type=float, default=IDLE_SECONDS)
    args = parser.parse_args()
    serve(args.socket, args.opt, args.idle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
