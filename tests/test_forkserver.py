"""The fork server (llmcc.forkserver): a compile run by a child of the per-user server does
what the same compile does in its own process, and everything that goes wrong with the server
ends in a compile that still succeeds.

Each test has a runtime directory of its own (`xdg`), so the server it starts is its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import SIZE_C, SIZE_H, log_events, restore_default_signals, run

from llmcc import forkserver

START_WAIT = 30.0  # seconds a server may take to start on a busy 2-core machine


@pytest.fixture
def served(env: dict[str, str], xdg: str, tmp_path: Path) -> dict[str, str]:
    """The test's environment, with a runtime directory of its own for its fork server."""
    env["XDG_RUNTIME_DIR"] = xdg
    (tmp_path / "size.h").write_text(SIZE_H)
    (tmp_path / "size.c").write_text(SIZE_C)
    return env


def servers(xdg: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"])
            if "llmcc.forkserver" in (p.info["cmdline"] or ())
            and any(xdg in arg for arg in p.info["cmdline"])]


def wait_for(condition, what: str, timeout: float = START_WAIT):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"no {what} after {timeout:g} s"
        time.sleep(0.05)
    return found


def start_server(llmcc: str, env: dict[str, str], cwd: Path,
                 preexec=None) -> psutil.Process:
    """Compile once (which starts the server in the background; by a process that ran
    `preexec` first, whose signal state the server inherits) and wait until it listens."""
    (cwd / "first.c").write_text("int first;\n")
    first = subprocess.run([llmcc, "-Oz", "-c", "first.c", "-o", "first.o"], cwd=cwd, env=env,
                           capture_output=True, preexec_fn=preexec, check=False)
    assert first.returncode == 0, first.stderr
    xdg = env["XDG_RUNTIME_DIR"]
    wait_for(lambda: list(Path(xdg, "llmcc").glob("forkserver-*.sock")), "socket")
    return wait_for(lambda: servers(xdg), "server")[0]


def compile_size(llmcc: str, env: dict[str, str], cwd: Path, out: str = "size.o",
                 **extra: str) -> subprocess.CompletedProcess:
    return run([llmcc, "-Oz", "-Wall", "-c", "size.c", "-o", out], cwd, {**env, **extra})


def served_soon(llmcc: str, env: dict[str, str], cwd: Path) -> None:
    """Compile new TUs until one is served by a fork server (a repeated one would be a
    direct-mode hit, which is never served)."""
    attempts = iter(range(1 << 30))

    def served() -> bool:
        number = next(attempts)
        (cwd / f"new{number}.c").write_text(f"int new{number};\n")
        done = run([llmcc, "-Oz", "-c", f"new{number}.c", "-o", f"new{number}.o"], cwd, env)
        return done.returncode == 0 and forked(env, f"new{number}.o") == [True]

    wait_for(served, "served compile")


def forked(env: dict[str, str], output: str) -> list[bool]:
    """For each compile of `output` in the log: whether a child of the fork server ran it."""
    return [bool(e.get("fork_server")) for e in log_events(env) if e.get("output") == output]


def test_a_served_compile_gives_the_same_object_diagnostics_and_status(served, llmcc, tmp_path,
                                                                        clang):
    start_server(llmcc, served, tmp_path)
    ours = compile_size(llmcc, served, tmp_path)
    alone = compile_size(llmcc, served, tmp_path, "alone.o", LLMCC_FORK_SERVER="0",
                         LLMCC_CACHE_DIR=str(tmp_path / "other-cache"))
    plain = run([clang, "-Oz", "-Wall", "-c", "size.c", "-o", "plain.o"], tmp_path)
    assert forked(served, "size.o") == [True] and forked(served, "alone.o") == [False]
    assert ours.returncode == alone.returncode == 0
    assert ours.stderr == alone.stderr == plain.stderr.replace(b"plain.o", b"size.o")
    assert b"unused" in ours.stderr  # the warning, once
    assert (tmp_path / "size.o").read_bytes() == (tmp_path / "alone.o").read_bytes()


def test_a_compile_error_is_clangs_own_through_the_server(served, llmcc, clang, tmp_path):
    start_server(llmcc, served, tmp_path)
    (tmp_path / "bad.c").write_text("int f(void) { return missing; }\n")
    ours = run([llmcc, "-Oz", "-c", "bad.c", "-o", "bad.o"], tmp_path, served)
    plain = run([clang, "-Oz", "-c", "bad.c", "-o", "bad.o"], tmp_path)
    assert forked(served, "bad.o") == [True]  # the child tried, then handed over
    assert (ours.returncode, ours.stdout, ours.stderr) == (plain.returncode, plain.stdout,
                                                          plain.stderr)
    assert not (tmp_path / "bad.o").exists()


def test_the_child_takes_on_directory_environment_and_umask(served, llmcc, clang, tmp_path):
    start_server(llmcc, served, tmp_path)
    work = tmp_path / "deep" / "work"
    (work / "inc").mkdir(parents=True)
    (work / "out").mkdir()
    (work / "inc" / "size.h").write_text(SIZE_H)
    (work / "size.c").write_text(SIZE_C)
    env = {**served, "LLMCC_LOG": "relative.log"}  # relative to the compile's directory
    done = subprocess.run([llmcc, "-Oz", "-Iinc", "-c", "size.c", "-o", "out/size.o"], cwd=work,
                          env=env, capture_output=True, check=False,
                          preexec_fn=lambda: os.umask(0o027))
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in (work / "relative.log").read_text().splitlines()]
    assert [e.get("fork_server") for e in events] == [True]
    subprocess.run([clang, "-Oz", "-Iinc", "-c", "size.c", "-o", "out/plain.o"], cwd=work,
                   check=True, preexec_fn=lambda: os.umask(0o027))
    assert (work / "out/size.o").stat().st_mode == (work / "out/plain.o").stat().st_mode


def test_parallel_compiles_through_one_server_match_their_own_processes(served, llmcc,
                                                                        tmp_path):
    start_server(llmcc, served, tmp_path)
    for i in range(8):
        (tmp_path / f"u{i}.c").write_text(SIZE_C.replace("SCALE + 1", f"SCALE + {i + 2}"))
    compiles = [subprocess.Popen([llmcc, "-Oz", "-c", f"u{i}.c", "-o", f"u{i}.o"],
                                 cwd=tmp_path, env=served) for i in range(8)]
    assert [c.wait() for c in compiles] == [0] * 8
    alone = {**served, "LLMCC_FORK_SERVER": "0", "LLMCC_CACHE_DIR": str(tmp_path / "other")}
    for i in range(8):
        assert forked(served, f"u{i}.o") == [True]
        assert run([llmcc, "-Oz", "-c", f"u{i}.c", "-o", f"a{i}.o"], tmp_path,
                   alone).returncode == 0
        assert (tmp_path / f"u{i}.o").read_bytes() == (tmp_path / f"a{i}.o").read_bytes()


def _slow_source(path: Path) -> None:
    """A TU that takes llmcc seconds: many functions for opt and code generation."""
    body = "\n".join(f"int f{i}(int *a, int n) {{ int s = {i}; for (int j = 0; j < n; j++) "
                     f"s += a[j] * {i} ^ (s >> 3); return s; }}" for i in range(3000))
    path.write_text(body + "\n")


ENDING = (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM)


def _ignoring_them() -> None:
    for number in ENDING:
        signal.signal(number, signal.SIG_IGN)


def _blocking_them() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, ENDING)


@pytest.mark.parametrize("preexec", [None, _ignoring_them, _blocking_them],
                         ids=["server-started-at-a-terminal", "server-started-ignoring-ctrl-c",
                              "server-started-blocking-ctrl-c"])
def test_ctrl_c_reaches_the_child_and_its_tools(served, llmcc, tmp_path, preexec):
    """Also where the compile that started the server ignored or blocked Ctrl-C (a background
    job of a script ignores it, nohup SIGHUP): the child's signals are the asking process's."""
    server = start_server(llmcc, served, tmp_path, preexec)
    _slow_source(tmp_path / "slow.c")
    client = subprocess.Popen([llmcc, "-Oz", "-c", "slow.c", "-o", "slow.o"], cwd=tmp_path,
                              env=served, stderr=subprocess.PIPE,
                              preexec_fn=restore_default_signals)  # noqa: PLW1509 - no threads
    child = wait_for(lambda: server.children(), "child")[0]
    wait_for(lambda: child.children(), "tool of the child")
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=60)
    assert client.returncode == 130, stderr
    assert b"Traceback" not in stderr
    assert not (tmp_path / "slow.o").exists()
    psutil.wait_procs([child], timeout=10)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert server.is_running()  # the server serves the next compile


def test_a_child_killed_mid_compile_means_the_compile_runs_in_its_own_process(served, llmcc,
                                                                              tmp_path):
    server = start_server(llmcc, served, tmp_path)
    _slow_source(tmp_path / "slow.c")
    client = subprocess.Popen([llmcc, "-Oz", "-c", "slow.c", "-o", "slow.o"], cwd=tmp_path,
                              env=served)
    wait_for(lambda: server.children(), "child")[0].kill()
    assert client.wait(timeout=300) == 0
    assert forked(served, "slow.o") == [False]  # compiled in its own process instead
    alone = {**served, "LLMCC_FORK_SERVER": "0", "LLMCC_CACHE_DIR": str(tmp_path / "other")}
    assert run([llmcc, "-Oz", "-c", "slow.c", "-o", "alone.o"], tmp_path, alone).returncode == 0
    assert (tmp_path / "slow.o").read_bytes() == (tmp_path / "alone.o").read_bytes()
    # the socket of a server whose child died is removed: that server leaves, the next compile
    # starts another
    psutil.wait_procs([server], timeout=10)
    assert not server.is_running()


def test_a_stale_socket_compiles_in_process_and_a_new_server_takes_over(served, llmcc,
                                                                       tmp_path):
    server = start_server(llmcc, served, tmp_path)
    server.kill()
    server.wait(timeout=10)
    assert list(Path(served["XDG_RUNTIME_DIR"], "llmcc").glob("forkserver-*.sock"))  # stale
    assert compile_size(llmcc, served, tmp_path).returncode == 0
    assert forked(served, "size.o") == [False]
    wait_for(lambda: [p for p in servers(served["XDG_RUNTIME_DIR"]) if p.pid != server.pid],
             "new server")
    served_soon(llmcc, served, tmp_path)


def test_passthrough_and_disabled_compiles_start_no_server(served, llmcc, tmp_path):
    assert run([llmcc, "-O0", "-c", "size.c", "-o", "o0.o"], tmp_path, served).returncode == 0
    assert compile_size(llmcc, served, tmp_path, LLMCC_FORK_SERVER="0").returncode == 0
    time.sleep(1)
    assert not servers(served["XDG_RUNTIME_DIR"])


def test_a_process_with_preloaded_libraries_is_not_served(served, llmcc, tmp_path):
    start_server(llmcc, served, tmp_path)
    libm = next(p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib64/libm.so.6")
                if os.path.exists(p))
    assert compile_size(llmcc, served, tmp_path, LD_PRELOAD=libm).returncode == 0
    assert forked(served, "size.o") == [False]


def test_only_the_same_world_is_served():
    here = forkserver.where()
    assert forkserver.differs(here, here) is None
    for key, other in (("namespaces", {**here["namespaces"], "mnt": "mnt:[1]"}),
                       ("cgroup", b"0::/elsewhere\n"), ("groups", [*here["groups"], 12345]),
                       ("root", (0, 0)), ("scheduling", (19, 0, 0))):
        assert forkserver.differs({**here, key: other}, here) == f"another {key}"
    no_proc = {**here, "namespaces": dict.fromkeys(here["namespaces"])}
    assert forkserver.differs(no_proc, no_proc) == "no /proc to compare namespaces"


def test_a_nice_build_gets_a_server_of_its_own(served, llmcc, tmp_path):
    start_server(llmcc, served, tmp_path)
    done = subprocess.run([llmcc, "-Oz", "-c", "size.c", "-o", "nice.o"], cwd=tmp_path,
                          env=served, check=False, preexec_fn=lambda: os.nice(5))
    assert done.returncode == 0
    found = wait_for(lambda: [p for p in servers(served["XDG_RUNTIME_DIR"]) if p.nice() == 5],
                     "nice server")
    assert len(servers(served["XDG_RUNTIME_DIR"])) == 2 and found


def test_an_idle_server_leaves_and_removes_its_socket(xdg):
    path = os.path.join(xdg, "forkserver-idle.sock")
    server = subprocess.Popen([sys.executable, "-m", "llmcc.forkserver", "--socket", path,
                               "--idle", "1"])
    wait_for(lambda: os.path.exists(path), "socket")
    assert server.wait(timeout=30) == 0
    assert not os.path.exists(path) and not os.path.exists(path + ".pid")


def test_llmcc_ctl_doctor_and_server_show_and_stop_fork_servers(served, llmcc, llmcc_ctl, tmp_path):
    doctor = run([llmcc_ctl, "doctor"], tmp_path, served).stdout.decode()
    assert "ok   fork server: none running; the next compile llmcc decides starts one" in doctor
    server = start_server(llmcc, served, tmp_path)
    status = run([llmcc_ctl, "server", "status"], tmp_path, served)
    assert f"pid {server.pid}, fork server" in status.stdout.decode()
    doctor = run([llmcc_ctl, "doctor"], tmp_path, served).stdout.decode()
    assert f"fork server {served['XDG_RUNTIME_DIR']}/llmcc/forkserver-" in doctor
    assert f": pid {server.pid}\n" in doctor
    off = run([llmcc_ctl, "doctor"], tmp_path, {**served, "LLMCC_FORK_SERVER": "0"})
    assert "note fork server: off (LLMCC_FORK_SERVER=0)" in off.stdout.decode()
    stop = run([llmcc_ctl, "server", "stop"], tmp_path, served)
    assert stop.stdout.decode().strip() == "stopped 1 server"
    psutil.wait_procs([server], timeout=10)
    assert not server.is_running()
    assert "no fork server is running" in run([llmcc_ctl, "server", "status"], tmp_path,
                                              served).stdout.decode()


def test_a_direct_mode_hit_is_served_in_the_asking_process(served, llmcc, tmp_path):
    """A hit costs less in its own process than a fork of the server's."""
    start_server(llmcc, served, tmp_path)
    for _ in range(2):
        assert compile_size(llmcc, served, tmp_path).returncode == 0
    outcomes = [(e["outcome"], bool(e.get("fork_server"))) for e in log_events(served)
                if e.get("output") == "size.o"]
    assert outcomes == [("miss", True), ("direct_hit", False)]


def test_a_hung_server_costs_one_wait_and_is_replaced(served, llmcc, tmp_path):
    server = start_server(llmcc, served, tmp_path)
    server.suspend()  # accepts (the kernel's backlog) but never answers
    started = time.monotonic()
    assert compile_size(llmcc, served, tmp_path).returncode == 0
    assert time.monotonic() - started < forkserver.ANSWER_TIMEOUT + 30
    assert forked(served, "size.o") == [False]
    psutil.wait_procs([server], timeout=10)
    assert not server.is_running()  # killed, once confirmed to be this user's fork server
    served_soon(llmcc, served, tmp_path)


def test_a_damaged_forest_is_reported_by_served_compiles_as_by_their_own(served, llmcc,
                                                                         package_copy, tmp_path):
    """The server preloads what it can; what it cannot, each compile meets and says itself."""
    forest_file = package_copy / "advisor" / "forest.bin"
    forest_file.write_bytes(forest_file.read_bytes()[:1000])
    start_server(llmcc, served, tmp_path)
    for number, setting in enumerate(("1", "0")):
        (tmp_path / f"d{number}.c").write_text(SIZE_C.replace("SCALE + 1", f"SCALE + {number}"))
        done = run([llmcc, "-Oz", "-c", f"d{number}.c", "-o", f"d{number}.o"], tmp_path,
                   {**served, "LLMCC_FORK_SERVER": setting})
        assert done.returncode == 0
        assert done.stderr.decode().count("is corrupt") == 1, done.stderr
        assert forked(served, f"d{number}.o") == [setting == "1"]
