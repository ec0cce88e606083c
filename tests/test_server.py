"""The model server and its client, with real processes and the tiny model of test_model: the
same answers in-process, through the per-user server, `llmcc-ctl serve` and llama-cpp-python's
server; one server per user and model, started on demand, replaced when stale, killed when hung,
gone when idle."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import socketserver
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest
from test_model import Trained, one_thread, summaries  # noqa: F401 - fixtures used here

from llmcc.advisor import client
from llmcc.advisor.client import ServerError
from llmcc.advisor.model_runtime import (
    ANSWER,
    BOS,
    END,
    KEY_CANDIDATES,
    ModelRuntime,
    answers,
    gguf_strings,
    lists_by_token,
    prompt_text,
    top_count,
)

DIGEST = "0123456789abcdef" * 4
K = 3


@pytest.fixture(scope="module")
def model(summaries: list[dict], tmp_path_factory) -> Trained:  # noqa: F811
    return Trained(summaries, tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def texts(model: Trained) -> list[str]:
    return [prompt_text(prompt) for prompt in model.prompts]


def lists(path: str) -> dict:
    """The model file's answer tokens and their pass lists, as a compile reads them."""
    return lists_by_token(gguf_strings(path, (KEY_CANDIDATES,)).get(KEY_CANDIDATES))


def in_process(path: str, texts: list[str]) -> list[list]:
    with ModelRuntime(path) as runtime:
        assert runtime.lists == lists(path)
        return [answers(runtime.top(text, top_count(K, len(runtime.lists))), K,
                        runtime.lists) for text in texts]


@pytest.fixture(scope="module")
def expected(model: Trained, texts: list[str]) -> list[list]:
    """The Q8_0 model's answers in this process: what every server must answer."""
    found = in_process(model.paths["Q8_0"], texts)
    assert all(len(lists) == K for lists in found)
    return found


def ask(model_path: str, text: str, **options) -> list:
    options = {"threads": 1, "gpu_layers": 0, "idle": 60, **options}
    known = lists(model_path)
    def request(address: str, timeout: float) -> list:
        return client.complete_top(address, text, top_count(K, len(known)), timeout)

    return answers(client.ask_per_user_server(model_path, DIGEST, request, **options), K, known)


def server_pids() -> list[int]:
    return [health["pid"] for _, health in client.servers()]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(condition, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_answers_are_the_same_in_process_through_the_per_user_server_and_llmcc_ctl_serve(
        model: Trained, texts: list[str], expected: list, xdg: str, llmcc_ctl: str):
    assert [ask(model.paths["Q8_0"], text) for text in texts] == expected
    serve = subprocess.Popen([llmcc_ctl, "serve", "--model", model.paths["Q8_0"], "--port",
                              "0"], stderr=subprocess.PIPE, text=True)
    try:
        line = serve.stderr.readline()
        assert " on http://127.0.0.1:" in line, line
        address = line.split(" on ")[-1].strip()
        known = lists(model.paths["Q8_0"])
        assert [answers(client.complete_top(address, text, top_count(K, len(known))), K, known)
                for text in texts] == expected
    finally:
        serve.terminate()
    assert serve.wait(10) == 0


@pytest.fixture(scope="module")
def llama_cpp_server(model: Trained):
    """llama-cpp-python's own server on the F32 export (its Llama class crashes on Q8_0 on
    CPUs with AMX), with the logits it needs for logprobs."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    address = f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", model.paths["F32"], "--host",
         "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--logits_all", "true",
         "--n_threads", "1", "--verbose", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> bool:
        assert process.poll() is None, "llama_cpp.server exited"
        try:
            client.complete_top(address, "x", 1)
        except ServerError:
            return False
        return True

    try:
        assert wait_until(listening, 60)
        yield address
    finally:
        process.kill()
        process.wait()


def test_llama_cpp_pythons_server_reports_the_same_log_probabilities(
        model: Trained, texts: list[str], llama_cpp_server: str):
    """Through the same client, for every token llama-cpp-python writes out: it writes control
    tokens (BOS, ANSWER, END) as '', and longer ones too (see below)."""
    with ModelRuntime(model.paths["F32"]) as runtime:
        for text in texts:
            ours = {token: value for token, value in runtime.top(text, 16)
                    if token not in (BOS, ANSWER, END) and len(token.encode()) <= 32}
            theirs = {token: value for token, value
                      in client.complete_top(llama_cpp_server, text, 16) if token}
            assert theirs.keys() == ours.keys()
            assert list(theirs.values()) == pytest.approx(list(ours.values()), abs=1e-4)


def test_answers_are_the_same_through_llama_cpp_pythons_server(
        model: Trained, texts: list[str], llama_cpp_server: str):
    known = lists(model.paths["F32"])
    assert [answers(client.complete_top(llama_cpp_server, text, top_count(K, len(known))), K,
                    known)
            for text in texts] == in_process(model.paths["F32"], texts)


def test_the_first_request_starts_a_private_server_that_the_next_reuses(
        model: Trained, texts: list[str], expected: list, xdg: str):
    assert client.servers() == []
    assert ask(model.paths["Q8_0"], texts[0]) == expected[0]
    [(path, health)] = client.servers()
    assert ask(model.paths["Q8_0"], texts[1]) == expected[1]
    [(_, again)] = client.servers()
    assert again["pid"] == health["pid"] and again["requests"] == 2
    assert again["model"] == model.paths["Q8_0"] and again["rss"] > 0
    assert path == client.socket_path(DIGEST, 0)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    with open(client.pid_file(path)) as handle:
        assert int(handle.read()) == health["pid"]


CLIENT = """import json, sys
from llmcc.advisor import client
from llmcc.advisor.model_runtime import (KEY_CANDIDATES, answers, gguf_strings, lists_by_token,
                                         top_count)
model, digest, text = sys.argv[1:]
sys.stdin.read()  # wait for the others
lists = lists_by_token(gguf_strings(model, (KEY_CANDIDATES,)).get(KEY_CANDIDATES))
top = client.ask_per_user_server(
    model, digest, lambda address, timeout: client.complete_top(
        address, text, top_count(3, len(lists)), timeout),
    threads=1, gpu_layers=0, idle=60)
print(json.dumps(answers(top, 3, lists)))
"""


def test_concurrent_clients_start_one_server(model: Trained, texts: list[str], expected: list,
                                             xdg: str):
    clients = [subprocess.Popen([sys.executable, "-c", CLIENT, model.paths["Q8_0"], DIGEST,
                                 texts[0]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True) for _ in range(8)]
    for process in clients:  # all go at once
        process.stdin.close()
    got = [json.loads(process.stdout.read()) for process in clients]
    assert [process.wait() for process in clients] == [0] * 8
    assert got == [[list(passes) for passes in expected[0]]] * 8
    assert len(server_pids()) == 1
    log = Path(xdg, "llmcc", client.LOG_NAME).read_text()
    assert log.count(": serving ") == 1, log


def test_an_idle_server_exits_and_removes_its_socket(model: Trained, texts: list[str],
                                                     expected: list, xdg: str):
    assert ask(model.paths["Q8_0"], texts[0], idle=1) == expected[0]
    [pid] = server_pids()
    path = client.socket_path(DIGEST, 0)
    assert wait_until(lambda: gone(pid))
    assert not os.path.exists(path) and not os.path.exists(client.pid_file(path))
    assert "exiting: no request for 1 s" in Path(xdg, "llmcc", client.LOG_NAME).read_text()


def test_a_stale_socket_is_replaced(model: Trained, texts: list[str], expected: list, xdg: str):
    path = client.socket_path(DIGEST, 0)
    with socket.socket(socket.AF_UNIX) as stale:  # bound, never listening: refuses
        stale.bind(path)
    stale_inode = os.stat(path).st_ino
    Path(client.pid_file(path)).write_text(f"{os.getpid()}\n")  # not a server: never killed
    assert ask(model.paths["Q8_0"], texts[0]) == expected[0]
    assert os.stat(path).st_ino != stale_inode
    assert len(server_pids()) == 1


def unix_sockets_in(directory: str) -> int:
    """Sockets bound in `directory`: a server's listening socket, and one more for each
    connection it has not accepted yet."""
    with open("/proc/net/unix") as table:
        return sum(os.path.dirname(line.split()[-1]) == directory
                   for line in table if len(line.split()) == 8)


def test_a_killed_server_fails_the_request_it_had_and_the_next_starts_another(
        model: Trained, texts: list[str], expected: list, xdg: str):
    path = client.socket_path(DIGEST, 0)
    ask(model.paths["Q8_0"], texts[0])
    [first] = server_pids()
    os.kill(first, signal.SIGKILL)  # between requests: the next starts a server unnoticed
    assert wait_until(lambda: unix_sockets_in(os.path.dirname(path)) == 0)  # fully exited
    assert ask(model.paths["Q8_0"], texts[1]) == expected[1]
    [second] = server_pids()
    assert second != first
    # the server closes the connection it answered just after answering: wait for that, so
    # that the count below is of its listening socket and the new connection only
    assert wait_until(lambda: unix_sockets_in(os.path.dirname(path)) == 1)
    os.kill(second, signal.SIGSTOP)  # during a request: that request fails
    failed = []
    asking = threading.Thread(target=lambda: failed.append(
        pytest.raises(ServerError, ask, model.paths["Q8_0"], texts[0], timeout=60)))
    asking.start()
    assert wait_until(lambda: unix_sockets_in(os.path.dirname(path)) == 2)  # it connected
    os.kill(second, signal.SIGKILL)
    asking.join()
    assert failed and "failed" in str(failed[0].value)
    assert wait_until(lambda: unix_sockets_in(os.path.dirname(path)) == 0)
    assert ask(model.paths["Q8_0"], texts[2]) == expected[2]
    [third] = server_pids()
    assert third not in (first, second)


def test_a_hung_server_is_killed_after_the_timeout(model: Trained, texts: list[str],
                                                  expected: list, xdg: str):
    path = client.socket_path(DIGEST, 0)
    ask(model.paths["Q8_0"], texts[0])
    [pid] = server_pids()
    os.kill(pid, signal.SIGSTOP)
    with pytest.raises(ServerError, match="did not answer within 0.5 s"):
        ask(model.paths["Q8_0"], texts[0], timeout=0.5)
    assert wait_until(lambda: gone(pid))
    assert not os.path.exists(path)
    assert ask(model.paths["Q8_0"], texts[1]) == expected[1]


def test_a_server_exits_when_its_socket_or_its_model_file_changes(
        model: Trained, texts: list[str], xdg: str, tmp_path: Path):
    copy = shutil.copy(model.paths["Q8_0"], tmp_path / "model.gguf")
    ask(copy, texts[0])
    [first] = server_pids()
    os.unlink(client.socket_path(DIGEST, 0))
    assert wait_until(lambda: gone(first))
    ask(copy, texts[0])
    [second] = server_pids()
    os.utime(copy, ns=(0, 0))
    assert wait_until(lambda: gone(second))
    log = Path(xdg, "llmcc", client.LOG_NAME).read_text()
    assert "was removed" in log and f"{copy} changed" in log


def _post(path: str, body: bytes, headers: str = "") -> tuple[int, dict]:
    """A raw request to a unix socket: status and JSON body."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(f"POST /v1/completions HTTP/1.0\r\nContent-Length: {len(body)}\r\n"
                     f"{headers}\r\n".encode() + body)
        reply = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, data = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(data)


def test_the_server_answers_what_it_cannot_do_with_http_400(model: Trained, texts: list[str],
                                                           xdg: str):
    ask(model.paths["Q8_0"], texts[0])
    path = client.socket_path(DIGEST, 0)
    for body in (b"{not json", b"[]", b'{"prompt": 3, "max_tokens": 1}',
                 b'{"prompt": "x", "max_tokens": 0}', b'{"prompt": "x", "max_tokens": 2000}',
                 b'{"prompt": "x", "max_tokens": 1, "logprobs": -1}',
                 b'{"prompt": "x", "max_tokens": 3, "logprobs": 2}',
                 b'{"prompt": "x", "max_tokens": 1, "stream": true}'):
        status, reply = _post(path, body)
        assert status == 400 and reply["error"]["message"], body
    with pytest.raises(ServerError, match="HTTP 400: .*context"):
        client.complete_top("unix:" + path, " 1" * 5000, 16)
    status, reply = _post(path, json.dumps({"prompt": texts[0], "max_tokens": 1,
                                            "logprobs": 2, "temperature": 0}).encode())
    [choice] = reply["choices"]
    assert status == 200 and reply["object"] == "text_completion"
    assert choice["text"] == choice["logprobs"]["tokens"][0]
    top = choice["logprobs"]["top_logprobs"][0]
    assert len(top) == 2 and list(top.values()) == sorted(top.values(), reverse=True)
    assert top[choice["text"]] == choice["logprobs"]["token_logprobs"][0]


def test_longer_completions_are_the_models_greedy_text_answer(model: Trained, texts: list[str],
                                                              xdg: str):
    """What a model that answers in text (LLMCC_PROMPT=llm-compiler) is asked."""
    with ModelRuntime(model.paths["Q8_0"]) as runtime:
        expected = [runtime.generate(text, 5) for text in texts]
    request = [lambda address, timeout, text=text: client.complete_text(address, text, 5,
                                                                         timeout)
               for text in texts]
    got = [client.ask_per_user_server(model.paths["Q8_0"], DIGEST, ask_text, threads=1,
                                      gpu_layers=0, idle=60) for ask_text in request]
    assert got == expected and all(got)


REPLIES = {
    "garbage": b"garbage\r\n\r\n",
    "HTTP 500": b"HTTP/1.0 500 Oops\r\nContent-Length: 2\r\n\r\n{}",
    "not JSON": b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "no top_logprobs": b'HTTP/1.0 200 OK\r\nContent-Length: 15\r\n\r\n{"choices": []}',
    "a string logprob": b"HTTP/1.0 200 OK\r\n\r\n"
                        b'{"choices": [{"logprobs": {"top_logprobs": [{"a": "-1"}]}}]}',
}


@pytest.mark.parametrize("reply", REPLIES)
def test_a_server_that_does_not_answer_a_completion_is_a_server_error(reply: str, xdg: str):
    """At the per-user socket: an error, and no server is started in its place."""
    path = client.socket_path(DIGEST, 0)

    class Reply(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(65536)
            self.request.sendall(REPLIES[reply])

    with socketserver.ThreadingUnixStreamServer(path, Reply) as fake:
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        with pytest.raises(ServerError, match="model server at"):
            ask("/nonexistent.gguf", "text")
        fake.shutdown()


def test_a_server_address_that_is_not_one_is_a_server_error():
    for address in ("ftp://host", "http://host:port", "localhost:8080"):
        with pytest.raises(ServerError, match="unix:/path or http://host:port"):
            client.complete_top(address, "x", 1)
    with pytest.raises(ServerError, match="no model server at http://127.0.0.1:1"):
        client.complete_top("http://127.0.0.1:1", "x", 1)


def test_a_runtime_directory_open_to_others_is_refused(xdg: str, monkeypatch, tmp_path: Path):
    directory = client.runtime_dir()
    assert directory == os.path.join(xdg, "llmcc")
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    os.chmod(directory, 0o750)
    with pytest.raises(ServerError, match="open to other users"):
        client.runtime_dir()
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert client.runtime_dir() == str(tmp_path / f"llmcc-{os.getuid()}")


def test_without_xdg_runtime_dir_the_temporary_directory_is_the_one_tempfile_chooses(
        monkeypatch, tmp_path: Path):
    """runtime_dir finds it without importing tempfile, and must find the same one."""
    from llmcc.runtime_dir import temporary_directory

    (tmp_path / "relative").mkdir()
    (tmp_path / "a-file").write_text("")
    monkeypatch.chdir(tmp_path)
    settings = [{}, {"TMPDIR": str(tmp_path)}, {"TMPDIR": ""}, {"TMPDIR": "relative"},
                {"TMPDIR": str(tmp_path / "absent"), "TEMP": str(tmp_path / "a-file"),
                 "TMP": str(tmp_path / "relative")}]
    for setting in settings:
        for name in ("TMPDIR", "TEMP", "TMP"):
            monkeypatch.delenv(name, raising=False)
        for name, value in setting.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir's memo
        assert temporary_directory() == tempfile.gettempdir(), setting


def test_a_model_that_cannot_be_loaded_is_a_server_error(xdg: str, tmp_path: Path):
    with pytest.raises(ServerError, match="exited with status 1: .*does not exist"):
        ask(str(tmp_path / "absent.gguf"), "text")


def test_llmcc_ctl_server_status_and_stop(model: Trained, texts: list[str], xdg: str,
                                          llmcc_ctl: str):
    def ctl(*args: str) -> str:
        return subprocess.run([llmcc_ctl, "server", *args], check=True, capture_output=True,
                              text=True).stdout

    assert ctl("status") == "no model server is running\nno fork server is running\n"
    ask(model.paths["Q8_0"], texts[0])
    [pid] = server_pids()
    status = ctl("status")
    assert client.socket_path(DIGEST, 0) in status
    assert f"pid {pid}, model {model.paths['Q8_0']}" in status and "1 requests" in status
    assert ctl("stop") == "stopped 1 server\n"
    assert gone(pid) and not os.path.exists(client.socket_path(DIGEST, 0))
    assert "exiting: stopped by a signal" in Path(xdg, "llmcc", client.LOG_NAME).read_text()
    assert ctl("status") == "no model server is running\nno fork server is running\n"


def test_a_model_no_server_can_load_is_not_started_again_for_a_while(model: Trained,
                                                                      texts: list[str],
                                                                      xdg: str, tmp_path):
    broken = tmp_path / "half.gguf"
    blob = Path(model.paths["Q8_0"]).read_bytes()
    broken.write_bytes(blob[:len(blob) // 2])  # metadata whole, weights cut
    for _ in range(3):
        with pytest.raises(ServerError, match="exited with status"):
            ask(str(broken), texts[0])
    log = Path(xdg, "llmcc", client.LOG_NAME).read_text()
    assert log.count("cannot serve") == 1, log  # one start; the others were told at once
    assert server_pids() == []
