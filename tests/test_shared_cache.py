"""The shared decision cache against a real redis-server on a loopback port: two machines'
caches sharing decisions, and Redis dead, killed, locked, full or holding hostile values."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time

import pytest
from conftest import extract, log_events, run

from llmcc.cache.shared import KEY_PREFIX

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None,
                                reason="redis-server is not installed (scripts/setup.sh test)")


class Redis:
    """One redis-server for one test, on a free loopback port, with a client for poking it."""

    def __init__(self, tmp_path, *options: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.password = options[options.index("--requirepass") + 1] \
            if "--requirepass" in options else None
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path), *options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if self.call("PING") == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def url(self, credentials: str = "") -> str:
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    def call(self, *args: str) -> str:
        auth = ["-a", self.password, "--no-auth-warning"] if self.password else []
        done = subprocess.run(["redis-cli", "-p", str(self.port), *auth, *args],
                              capture_output=True, text=True, check=False)
        return done.stdout.strip()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def redis(tmp_path):
    server = Redis(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def zlib_sources(tmp_path, debian_source):
    return extract(debian_source("zlib"), tmp_path / "zlib")


def _machine(env, tmp_path, name: str, url: str) -> dict[str, str]:
    """The environment of one developer's machine: its own cache and log, the shared Redis."""
    return {**env, "LLMCC_CACHE_DIR": str(tmp_path / f"cache-{name}"),
            "LLMCC_LOG": str(tmp_path / f"{name}.log"), "LLMCC_CACHE_URL": url}


def _build(llmcc, sources, env, names) -> tuple[dict[str, bytes], list[bytes]]:
    """Compile zlib's library sources one by one; (objects, stderr of each compile)."""
    objects, errors = {}, []
    for name in names:
        done = run([llmcc, "-Oz", "-w", "-c", f"{name}.c", "-o", f"{name}.o"], cwd=sources,
                   env=env)
        assert done.returncode == 0, done.stderr
        objects[name] = (sources / f"{name}.o").read_bytes()
        errors.append(done.stderr)
    return objects, errors


ZLIB = ("adler32", "compress", "crc32", "deflate", "infback", "inffast", "inflate", "inftrees",
        "trees", "uncompr", "zutil")


def test_second_machine_gets_every_decision_from_the_first_and_searches_nothing(
        tmp_path, redis, zlib_sources, llmcc, llmcc_ctl, env):
    first = _machine(env, tmp_path, "a", redis.url())
    second = _machine(env, tmp_path, "b", redis.url())
    objects_a, _ = _build(llmcc, zlib_sources, first, ZLIB)
    objects_b, errors = _build(llmcc, zlib_sources, second, ZLIB)
    assert objects_b == objects_a and not any(errors)
    events = log_events(second)
    assert [e["outcome"] for e in events] == ["remote_hit"] * len(ZLIB)
    # measured here before use: the shared list alone, never the advisor's k lists
    assert all(e["evaluated"] == (e["passes"] is not None) for e in events)
    stats = json.loads(run([llmcc_ctl, "stats", "--json"], cwd=tmp_path, env=second).stdout)
    assert stats["remote_hits"] == len(ZLIB) and stats["misses"] == 0
    doctor = run([llmcc_ctl, "doctor"], cwd=tmp_path, env=second).stdout.decode()
    assert f"ok   shared cache {redis.url()}" in doctor


def test_redis_killed_mid_build_warns_once_and_the_build_goes_on(tmp_path, redis, zlib_sources,
                                                                 llmcc, env):
    machine = _machine(env, tmp_path, "a", redis.url())
    local = {**env, "LLMCC_CACHE_DIR": str(tmp_path / "alone"), "LLMCC_LOG": str(tmp_path / "l")}
    expected, _ = _build(llmcc, zlib_sources, local, ZLIB)
    half = len(ZLIB) // 2
    before, quiet = _build(llmcc, zlib_sources, machine, ZLIB[:half])
    redis.stop()
    started = time.monotonic()
    after, errors = _build(llmcc, zlib_sources, machine, ZLIB[half:])
    assert {**before, **after} == expected and not any(quiet)
    warned = [e for e in errors if e]
    assert len(warned) == 1 and b"shared cache" in warned[0] and b"local cache only" in warned[0]
    assert [e["outcome"] for e in log_events(machine)] == ["miss"] * len(ZLIB)
    assert time.monotonic() - started < 60  # no time-out per compile


def test_wrong_password_warns_once_without_showing_it(tmp_path, zlib_sources, llmcc, env):
    server = Redis(tmp_path, "--requirepass", "right-one")
    try:
        machine = _machine(env, tmp_path, "a", server.url(":wrong-one@"))
        _, errors = _build(llmcc, zlib_sources, machine, ZLIB[:3])
        assert b"shared cache redis://***@127.0.0.1" in errors[0] and b"wrong-one" not in errors[0]
        assert errors[1:] == [b"", b""]  # local only for a while, and quietly
        assert server.call("DBSIZE") == "0"
    finally:
        server.stop()


@pytest.mark.parametrize("value", [
    b"\x00garbage", b"[]", b'{"passes": null}', b"x" * 100_000,
    json.dumps({"passes": "always-inline -load=/tmp/evil.so", "baseline_size": 9,
                "size": 1, "advisor": "x"}).encode(),
    json.dumps({"passes": "always-inline gvn", "baseline_size": 100000, "size": 1,
                "advisor": "x"}).encode(),
    json.dumps({"passes": None, "baseline_size": True, "size": 1, "advisor": "x"}).encode(),
], ids=["binary", "not-a-dict", "missing-fields", "huge", "hostile-list", "false-promise",
        "bool-size"])
def test_garbage_or_hostile_value_is_measured_away_and_replaced(tmp_path, redis, zlib_sources,
                                                                llmcc, env, value):
    local = {**env, "LLMCC_CACHE_DIR": str(tmp_path / "alone"), "LLMCC_LOG": str(tmp_path / "l")}
    expected, _ = _build(llmcc, zlib_sources, local, ["deflate"])
    key = log_events(local)[0]["key"]
    subprocess.run(["redis-cli", "-p", str(redis.port), "-x", "SET", KEY_PREFIX + key],
                   input=value, capture_output=True, check=True)
    machine = _machine(env, tmp_path, "a", redis.url())
    objects, errors = _build(llmcc, zlib_sources, machine, ["deflate"])
    assert objects == expected and errors == [b""]
    assert log_events(machine)[0]["outcome"] == "miss"  # decided here, as if nothing was shared
    assert json.loads(redis.call("GET", KEY_PREFIX + key))["size"] == log_events(local)[0]["size"]


def test_full_redis_warns_once_and_keeps_the_local_cache(tmp_path, zlib_sources, llmcc, env):
    server = Redis(tmp_path, "--maxmemory", "1", "--maxmemory-policy", "noeviction")
    try:
        machine = _machine(env, tmp_path, "a", server.url())
        _, errors = _build(llmcc, zlib_sources, machine, ZLIB[:3])
        assert b"OutOfMemoryError" in errors[0] or b"maxmemory" in errors[0]
        assert errors[1:] == [b"", b""]
        _build(llmcc, zlib_sources, machine, ZLIB[:3])
        assert [e["outcome"] for e in log_events(machine)][3:] == ["direct_hit"] * 3
    finally:
        server.stop()
