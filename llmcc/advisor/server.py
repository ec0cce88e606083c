"""The model server: one loaded model answering OpenAI legacy completions over HTTP.

Each compile is a new process, and `import llama_cpp` plus loading a model costs more than a
typical compile, so the model lives in a server that compiles ask (llmcc.advisor.client). It
speaks the subset of the completions API that llama-cpp-python's server also speaks (a one-token
completion with `top_logprobs`), so one client talks to this server on a per-user unix socket,
to `llmcc-ctl serve` on TCP, and to a remote llama.cpp server.

A per-user server (--socket) tidies up after itself: it leaves when idle, when its socket is
removed or replaced (another server took over), when the model file changes (compiles now ask
a server named after the new file's digest), and on SIGTERM; it removes its socket and pid file
only while they are still its own.

    python -m llmcc.advisor.server --model PATH (--socket PATH | --host H --port P)
        [--idle SECONDS] [--threads N] [--gpu-layers N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socketserver
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from llmcc.advisor.client import IDLE_SECONDS, pid_file
from llmcc.advisor.model_runtime import ModelError, ModelRuntime

WATCH_INTERVAL = 0.25  # seconds between checks of idleness, socket and model file
MAX_BODY = 4 << 20     # a prompt is a few kB; refuse what cannot be one
QUEUE = 128            # pending connections: make -j64 may connect all at once
MAX_TOKENS = 1024      # a text answer is a pass list: far fewer tokens


class BadRequest(Exception):
    """A request this server cannot answer: HTTP 400 with the message."""


class Model:
    """The runtime behind a lock (its context holds one prompt at a time) and what /health
    reports."""

    def __init__(self, path: str, threads: int, gpu_layers: int, idle: float) -> None:
        self.path, self.threads, self.gpu_layers, self.idle = path, threads, gpu_layers, idle
        # any GGUF: compiles check an llmcc model's metadata themselves (model_runtime)
        self.runtime = ModelRuntime(path, threads, gpu_layers, llmcc_model=False)
        self.lock = threading.Lock()
        self.requests = 0
        self.last_request = time.monotonic()

    def complete(self, request) -> dict:
        """A completion in the legacy format, as llama-cpp-python's server gives it: one token
        with its top_logprobs (llmcc's models), or a greedy text answer (models that answer in
        text, llmcc.advisor.llm_compiler). No sampling: the likeliest token is always taken."""
        prompt, logprobs, max_tokens = _completion_fields(request)
        with self.lock:
            try:
                if max_tokens == 1:
                    top = self.runtime.top(prompt, max(logprobs or 0, 1))
                    text = top[0][0]
                else:
                    text = self.runtime.generate(prompt, max_tokens)
                prompt_tokens = len(self.runtime.tokenize(prompt, special=True))
            except ModelError as err:
                raise BadRequest(str(err)) from None
            finally:
                self.requests += 1
                self.last_request = time.monotonic()
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": "length"}
        if logprobs is not None:
            top_logprobs: dict[str, float] = {}
            for token, value in top[:logprobs]:
                top_logprobs.setdefault(token, value)  # tokens may read alike: the likelier
            choice["logprobs"] = {"tokens": [text], "token_logprobs": [top[0][1]],
                                  "top_logprobs": [top_logprobs],
                                  "text_offset": [len(prompt)]}
        completion_tokens = 1 if max_tokens == 1 else len(self.runtime.tokenize(text))
        return {
            "id": f"cmpl-{uuid.uuid4()}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.path,
            "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def models(self) -> dict:
        return {"object": "list",
                "data": [{"id": self.path, "object": "model", "owned_by": "me",
                          "permissions": []}]}

    def health(self) -> dict:
        import psutil

        return {"status": "ok", "pid": os.getpid(), "model": self.path, "threads": self.threads,
                "gpu_layers": self.gpu_layers, "rss": psutil.Process().memory_info().rss,
                "requests": self.requests, "idle": self.idle}


def _completion_fields(request) -> tuple[str, int | None, int]:
    """(prompt, logprobs, max_tokens) of a completion request this server can answer
    exactly."""
    if not isinstance(request, dict):
        raise BadRequest("the request must be a JSON object")
    prompt, logprobs = request.get("prompt"), request.get("logprobs")
    max_tokens = request.get("max_tokens", 16)
    if not isinstance(prompt, str):
        raise BadRequest("prompt must be a string")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not \
            1 <= max_tokens <= MAX_TOKENS:
        raise BadRequest(f"max_tokens must be an integer from 1 to {MAX_TOKENS}")
    if logprobs is not None and (not isinstance(logprobs, int) or isinstance(logprobs, bool)
                                 or logprobs < 0 or max_tokens != 1):
        raise BadRequest("logprobs must be a non-negative integer, with max_tokens 1")
    for unsupported in ("stream", "echo"):
        if request.get(unsupported):
            raise BadRequest(f"{unsupported} is not supported")
    return prompt, logprobs, max_tokens


class Handler(BaseHTTPRequestHandler):
    server_version = "llmcc"

    def log_message(self, format, *args) -> None:
        """No line per request: a build asks thousands of times."""

    def do_GET(self) -> None:
        model = self.server.model
        routes = {"/v1/models": model.models, "/health": model.health}
        if self.path in routes:
            self._send(200, routes[self.path]())
        else:
            self._error(404, f"no such endpoint: GET {self.path}")

    def do_POST(self) -> None:
        if self.path != "/v1/completions":
            self._error(404, f"no such endpoint: POST {self.path}")
            return
        try:
            self._send(200, self.server.model.complete(self._json_body()))
        except BadRequest as err:
            self._error(400, str(err))

    def _json_body(self):
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > MAX_BODY:
            raise BadRequest(f"Content-Length must be given, at most {MAX_BODY} bytes")
        try:
            return json.loads(self.rfile.read(int(length)))
        except ValueError as err:
            raise BadRequest(f"the body is not JSON: {err}") from None

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": {"message": message, "type": "invalid_request_error",
                                      "code": status}})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    request_queue_size = QUEUE


class TCPServer(ThreadingHTTPServer):
    request_queue_size = QUEUE


def _identity(path: str) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


def _model_stamp(path: str) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_size, status.st_mtime_ns


def _remove_if_own(path: str, identity: tuple[int, int]) -> None:
    with contextlib.suppress(FileNotFoundError):
        if _identity(path) == identity:
            os.unlink(path)


class _UnixPlace:
    """The socket and pid file of a per-user server. The socket is bound and listening under a
    temporary name, then renamed into place with its pid file already there: a client that
    finds the socket finds it answering, and a stale socket is replaced in one step."""

    def __init__(self, path: str, model: str) -> None:
        self.path, self.model = path, model
        directory = os.path.dirname(path)
        temporary = os.path.join(directory, f".{os.getpid()}.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        mask = os.umask(0o177)  # the socket is 0600: connecting needs write permission
        try:
            self.server = UnixServer(temporary, Handler)
        finally:
            os.umask(mask)
        pid_temporary = os.path.join(directory, f".{os.getpid()}.pid")
        with open(pid_temporary, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        os.replace(pid_temporary, pid_file(path))
        self.pid_identity = _identity(pid_file(path))
        os.replace(temporary, path)
        self.identity = _identity(path)
        self.model_stamp = _model_stamp(model)

    def gone(self) -> str | None:
        """Why this server is no longer wanted, if it is not."""
        try:
            if _identity(self.path) != self.identity:
                return f"{self.path} was replaced"
        except FileNotFoundError:
            return f"{self.path} was removed"
        try:
            if _model_stamp(self.model) != self.model_stamp:
                return f"{self.model} changed"
        except FileNotFoundError:
            return f"{self.model} was removed"
        return None

    def remove(self) -> None:
        _remove_if_own(self.path, self.identity)
        _remove_if_own(pid_file(self.path), self.pid_identity)


def serve(model_path: str, *, socket_path: str | None = None, host: str = "127.0.0.1",
          port: int = 8080, idle: float = IDLE_SECONDS, threads: int = 1,
          gpu_layers: int = 0) -> None:
    """Serve until idle for `idle` seconds (0: never), SIGTERM or SIGINT, or, on a unix
    socket, until the socket or the model file changes. Raises ModelError or OSError when it
    cannot start."""
    model_path = os.path.abspath(model_path)
    model = Model(model_path, threads, gpu_layers, idle)
    place = _UnixPlace(socket_path, model_path) if socket_path else None
    server = place.server if place else TCPServer((host, port), Handler)
    server.model = model
    where = (f"unix:{socket_path}" if place else
             f"http://{server.server_address[0]}:{server.server_address[1]}")
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    worker = threading.Thread(target=server.serve_forever, args=(WATCH_INTERVAL,), daemon=True)
    worker.start()
    _say(f"serving {model_path} on {where}")
    reason = "stopped by a signal"
    try:
        while not stop.wait(WATCH_INTERVAL):
            if idle and time.monotonic() - model.last_request > idle:
                reason = f"no request for {idle:g} s"
            elif place and (gone := place.gone()):
                reason = gone
            else:
                continue
            break
    finally:
        if place:
            place.remove()
        server.shutdown()
        server.server_close()
        with model.lock:  # let a request in flight finish with the model
            model.runtime.close()
        _say(f"exiting: {reason}")


def _say(message: str) -> None:
    print(f"llmcc.advisor.server {os.getpid()}: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmcc.advisor.server",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the GGUF file to serve")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", help="a unix socket (the per-user server)")
    where.add_argument("--port", type=int, help="a TCP port (0: any free one)")
    parser.add_argument("--host", default="127.0.0.1", help="with --port (default 127.0.0.1)")
    parser.add_argument("--idle", type=float, default=IDLE_SECONDS,
                        help=f"exit after this many seconds without a request, 0 never "
                             f"(default {IDLE_SECONDS})")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gpu-layers", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        serve(args.model, socket_path=args.socket, host=args.host, port=args.port,
              idle=args.idle, threads=args.threads, gpu_layers=args.gpu_layers)
    except (ModelError, OSError) as err:
        _say(f"cannot serve: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
