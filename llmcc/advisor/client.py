"""Asking a model server, and keeping the per-user server.

One protocol for every server: the OpenAI legacy completion, one token long, whose
`top_logprobs` rank the model's answers (or a text answer, for models asked in text). llmcc's own
server (llmcc.advisor.server) speaks it on a per-user unix socket ("unix:/path") and under
`llmcc-ctl serve`; llama-cpp-python's server speaks it too ("http://host:port", LLMCC_SERVER),
though up to 0.3.36 at least it writes every token longer than 32 bytes as ""
(abetlen/llama-cpp-python#2362): llmcc's answer tokens are short for that reason.

The per-user server is started on demand by the first compile that finds none, under a file
lock so that a parallel build starts one, and is found by a socket named after the model's
digest. A server that accepts a request and does not answer in time is taken for hung and
killed, once this user's llmcc server is confirmed to be that process.

Imported by every compile that asks the model: the standard library only, psutil only to kill.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import math
import os
import signal
import socket
import sys
import time
import urllib.parse

from llmcc import runtime_dir as private
from llmcc.advisor.model_runtime import ModelError

# A unix socket connects or is refused at once; it waits only when its server stopped
# accepting and the backlog (128) is full, i.e. when it hangs. Over TCP a LAN answers in a
# millisecond, but a remote server behind a VPN may take a hundred.
CONNECT_TIMEOUT = {"unix": 0.05, "http": 0.5}
# One answer takes ~30 ms. Under make -j8 eight compiles may queue on one server (~0.25 s),
# slowed a few times by the compiles sharing its cores; -j64 queues ~2 s. Ten seconds leaves
# room for that, and a hung server costs the compiles that meet it at most this long once.
REQUEST_TIMEOUT = 10.0
# Starting takes ~0.5 s (Python, llama_cpp, the model) on an idle machine; a compile that waits
# longer asks elsewhere, and the server it started serves the next.
START_TIMEOUT = 5.0
STATUS_TIMEOUT = 1.0  # llmcc-ctl server status: a server that does not answer is not listed
IDLE_SECONDS = 600  # a per-user server exits after this long without a request
STOP_TIMEOUT = 5.0  # llmcc-ctl server stop: SIGTERM, then SIGKILL after this long
POLL = 0.01  # seconds between looks for a starting server's socket
RETRY_AFTER = 600  # a server that could not start is not started again for this long
MAX_REPLY = 4 << 20
LOG_NAME, LOG_LIMIT = "server.log", 1 << 20  # the servers' stderr, started afresh past 1 MiB
SERVER_MODULE = "llmcc.advisor.server"
# the per-user servers in the runtime directory: socket name prefix -> the module each runs
KINDS = {"model-": SERVER_MODULE, "forkserver-": "llmcc.forkserver"}


class ServerError(ModelError):
    """A model server cannot be asked: none can be started, it failed, hung or answered
    something that is not a completion."""


class _Unreachable(ServerError):
    """Nothing listens at the address: a per-user server is to be started."""


class _StartFailed(ServerError):
    """The server exited before it listened: it cannot serve this model."""


class _TimedOut(ServerError):
    """The server accepted the request and did not answer in time: it hangs."""


def runtime_dir() -> str:
    """Where per-user sockets live: private to the user, who alone may ask their servers."""
    try:
        return private.runtime_dir()
    except private.Unusable as err:
        raise ServerError(str(err)) from None


def socket_path(digest: str, gpu_layers: int) -> str:
    return os.path.join(runtime_dir(), f"model-{digest[:16]}-gpu{gpu_layers}.sock")


def pid_file(socket: str) -> str:
    return socket + ".pid"


class _Connection(http.client.HTTPConnection):
    """HTTP to "unix:/path" or "http://host:port", with the connect timeout of its kind and
    `timeout` for the answer."""

    def __init__(self, address: str, timeout: float) -> None:
        if address.startswith("unix:"):
            self.kind, self.unix_path, self.prefix = "unix", address[len("unix:"):], ""
            super().__init__("localhost", timeout=timeout)
            return
        parts = urllib.parse.urlsplit(address)
        try:
            port = parts.port
        except ValueError:  # not a number
            port = -1
        if parts.scheme != "http" or not parts.hostname or port == -1:
            raise ServerError(f"cannot ask {address!r}: a server is unix:/path or "
                              f"http://host:port")
        self.kind, self.prefix = "http", parts.path.rstrip("/")
        super().__init__(parts.hostname, port, timeout=timeout)

    def connect(self) -> None:
        connect_timeout = min(self.timeout, CONNECT_TIMEOUT[self.kind])
        if self.kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(connect_timeout)
                sock.connect(self.unix_path)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((self.host, self.port), connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout)
        self.sock = sock


def _request(address: str, method: str, path: str, body: dict | None, timeout: float):
    """The JSON a server answers with HTTP 200; ServerError for anything else."""
    connection = _Connection(address, timeout)
    try:
        connection.request(method, connection.prefix + path,
                           body=None if body is None else json.dumps(body),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read(MAX_REPLY + 1)
    except (FileNotFoundError, ConnectionRefusedError) as err:
        raise _Unreachable(f"no model server at {address} ({err.strerror})") from None
    except TimeoutError:
        raise _TimedOut(f"the model server at {address} did not answer within "
                        f"{timeout:g} s") from None
    except (OSError, http.client.HTTPException) as err:
        raise ServerError(f"the model server at {address} failed: "
                          f"{type(err).__name__}: {err}") from None
    finally:
        connection.close()
    if len(data) > MAX_REPLY:
        raise ServerError(f"the model server at {address} answered over {MAX_REPLY} bytes")
    try:
        reply = json.loads(data)
    except ValueError:
        reply = None
    if response.status != 200:
        message = reply.get("error") if isinstance(reply, dict) else None
        if isinstance(message, dict):
            message = message.get("message")
        raise ServerError(f"the model server at {address} answered HTTP {response.status}: "
                          f"{message or data[:200].decode(errors='replace')}")
    if reply is None:
        raise ServerError(f"the model server at {address} answered {data[:200]!r}, not JSON")
    return reply


def _top_logprobs(reply, address: str) -> list[tuple[str, float]]:
    """A completion's top_logprobs for its one token, best first."""
    try:
        top = reply["choices"][0]["logprobs"]["top_logprobs"][0]
    except (KeyError, IndexError, TypeError):
        top = None
    if not isinstance(top, dict) or not top or not all(
            isinstance(value, int | float) and not isinstance(value, bool)
            and not math.isnan(value) for value in top.values()):
        raise ServerError(f"the model server at {address} did not answer a completion "
                          f"with top_logprobs")
    return sorted(((text, float(value)) for text, value in top.items()),
                  key=lambda pair: -pair[1])


def complete_top(address: str, text: str, n: int,
                 timeout: float = REQUEST_TIMEOUT) -> list[tuple[str, float]]:
    """The n likeliest next tokens after `text` at the server at `address` ("unix:/path" or
    "http://host:port"): (token text, log-probability), best first, as ModelRuntime.top."""
    reply = _request(address, "POST", "/v1/completions",
                     {"prompt": text, "max_tokens": 1, "logprobs": n, "temperature": 0,
                      "echo": False}, timeout)
    return _top_logprobs(reply, address)[:n]


def complete_text(address: str, text: str, max_tokens: int,
                  timeout: float = REQUEST_TIMEOUT) -> str:
    """The greedy continuation of `text` (at most `max_tokens` tokens) at the server at
    `address`, as ModelRuntime.generate: for models that answer in text."""
    reply = _request(address, "POST", "/v1/completions",
                     {"prompt": text, "max_tokens": max_tokens, "temperature": 0,
                      "echo": False}, timeout)
    try:
        answer = reply["choices"][0]["text"]
    except (KeyError, IndexError, TypeError):
        answer = None
    if not isinstance(answer, str):
        raise ServerError(f"the model server at {address} did not answer a completion")
    return answer


def ask_per_user_server(model_path: str, digest: str, request, *, threads: int,
                        gpu_layers: int, idle: float, timeout: float = REQUEST_TIMEOUT):
    """`request(address, timeout)` (complete_top or complete_text with the rest of their
    arguments given) at this user's server for the model with `digest`, started if none
    answers."""
    path = socket_path(digest, gpu_layers)
    try:
        return _ask(path, request, timeout)
    except _Unreachable:
        pass
    with _locked(path):
        try:  # started by another compile while this one waited for the lock?
            return _ask(path, request, timeout)
        except _Unreachable:
            _start_unless_it_just_failed(path, model_path, threads, gpu_layers, idle)
    return _ask(path, request, timeout)


def _ask(path: str, request, timeout: float):
    asked = private.inode(path)
    try:
        return request("unix:" + path, timeout)
    except _TimedOut:
        kill_hung(path, asked)
        raise


def kill_hung(path: str, asked: int | None) -> None:
    """Kill the server on `path` that did not answer in time (once confirmed to be this user's
    llmcc server there), unless a server another compile started has replaced it since
    (`asked`: the socket's inode when it was asked)."""
    with _locked(path):
        if private.inode(path) == asked:
            _kill(path, signal.SIGKILL)


@contextlib.contextmanager
def _locked(path: str):
    """Held while the server at `path` is started or killed."""
    with open(path + ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _start_unless_it_just_failed(path: str, model_path: str, threads: int, gpu_layers: int,
                                 idle: float) -> None:
    """_start, but a server for this model that exited while starting in the last
    RETRY_AFTER seconds (a model file llama.cpp cannot load) is not started again: each
    compile would pay the start for nothing. The model's digest names the socket, so a
    repaired file is started at once."""
    failed = path + ".failed"
    try:
        if time.time() - os.stat(failed).st_mtime < RETRY_AFTER:
            with open(failed) as handle:
                raise ServerError(handle.read().strip())
    except FileNotFoundError:
        pass
    try:
        _start(path, model_path, threads, gpu_layers, idle)
    except _StartFailed as err:
        with contextlib.suppress(OSError), open(failed, "w") as handle:
            handle.write(str(err))
        raise


def _start(path: str, model_path: str, threads: int, gpu_layers: int, idle: float) -> None:
    """Start a server on `path`, detached from this compile, and wait until it listens."""
    import subprocess

    _remove(path)  # stale: nothing answered there
    log = os.path.join(os.path.dirname(path), LOG_NAME)
    command = [sys.executable, "-m", SERVER_MODULE, "--model", os.path.abspath(model_path),
               "--socket", path, "--idle", f"{idle:g}", "--threads", str(threads),
               "--gpu-layers", str(gpu_layers)]
    with contextlib.suppress(FileNotFoundError):
        if os.path.getsize(log) > LOG_LIMIT:
            _remove(log)
    with open(log, "ab") as stderr:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=stderr, cwd="/",
                                   start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while not os.path.exists(path):  # it appears listening (llmcc.advisor.server)
        if process.poll() is not None:
            raise _StartFailed(f"the model server exited with status {process.returncode}: "
                               f"{_last_line(log)}")
        if time.monotonic() > deadline:
            raise ServerError(f"the model server did not start within {START_TIMEOUT:g} s "
                              f"(see {log})")
        time.sleep(POLL)


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - 4096))
            lines = handle.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(nothing logged)"


def _module(path: str) -> str:
    """The module a per-user server on `path` runs (KINDS)."""
    name = os.path.basename(path)
    return next((module for prefix, module in KINDS.items() if name.startswith(prefix)),
                SERVER_MODULE)


def server_pid(path: str) -> int | None:
    """The pid in the server's pid file, if this user's llmcc server on `path` has it."""
    try:
        with open(pid_file(path)) as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    import psutil

    try:
        process = psutil.Process(pid)
        command, uid = process.cmdline(), process.uids().real
    except psutil.Error:
        return None
    ours = (uid == os.getuid() and _module(path) in command and "--socket" in command
            and command[command.index("--socket") + 1:][:1] == [path])
    return pid if ours else None


def _kill(path: str, number: int) -> int | None:
    """Send signal `number` to the server on `path` and remove its files; its pid, if any."""
    pid = server_pid(path)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)
            if number != signal.SIGKILL:
                os.kill(pid, signal.SIGCONT)  # a stopped process acts only once resumed
    if number == signal.SIGKILL or pid is None:
        _remove(path)
        _remove(pid_file(path))
    return pid


def sockets(prefixes=tuple(KINDS)) -> list[str]:
    """The sockets of this user's per-user servers whose names start with one of `prefixes`."""
    directory = runtime_dir()
    return [os.path.join(directory, name) for name in sorted(os.listdir(directory))
            if name.startswith(prefixes) and name.endswith(".sock")]


def servers() -> list[tuple[str, dict]]:
    """(socket, /health) of each per-user server that answers."""
    found = []
    for path in sockets(("model-",)):
        try:
            health = _request("unix:" + path, "GET", "/health", None, STATUS_TIMEOUT)
        except ServerError:
            continue
        if isinstance(health, dict):
            found.append((path, health))
    return found


def stop_servers() -> list[str]:
    """Stop every per-user server (model and fork servers), hung ones too: SIGTERM, then
    SIGKILL. Their sockets."""
    import psutil

    def running(process: psutil.Process) -> bool:
        try:  # a zombie has exited: the compile that started it has yet to reap it
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    stopping = {}
    for path in sockets():
        with _locked(path):
            pid = server_pid(path)
            if pid is not None:  # before the signal: a server may be gone the moment after
                with contextlib.suppress(psutil.NoSuchProcess):
                    stopping[path] = psutil.Process(pid)
            _kill(path, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(map(running, stopping.values())) and time.monotonic() < deadline:
        time.sleep(POLL)
    for path, process in stopping.items():
        if running(process):
            with _locked(path):
                _kill(path, signal.SIGKILL)
    return sorted(stopping)
