"""Atomic writes: a reader sees the old file or the new one, and nothing is left behind."""

from __future__ import annotations

import os

import pytest

from llmcc import files


def _interrupted_as_it_returns(real_open):
    """os.open whose call completes and then raises KeyboardInterrupt, as a Ctrl-C does that
    arrives during the system call: CPython runs the signal handler just after the call returns,
    before the caller has the descriptor."""
    def open_then_interrupt(path, flags, mode=0o777):
        real_open(path, flags, mode)
        raise KeyboardInterrupt
    return open_then_interrupt


def test_ctrl_c_as_the_temporary_file_is_created_leaves_the_old_file_and_no_temporary(
        tmp_path, monkeypatch):
    target = tmp_path / "size.d"
    target.write_bytes(b"old")
    monkeypatch.setattr(files.os, "open", _interrupted_as_it_returns(os.open))
    with pytest.raises(KeyboardInterrupt):
        files.write_atomic(str(target), b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["size.d"]


def test_a_taken_temporary_name_is_an_error_and_the_file_there_stays(tmp_path, monkeypatch):
    """O_EXCL refuses a name that exists; that file is someone else's and is never removed."""
    target = tmp_path / "out.o"
    monkeypatch.setattr(files.os, "urandom", lambda n: b"\0" * n)
    planted = tmp_path / f".out.o.{'00' * 6}.llmcc-tmp"
    planted.write_bytes(b"not ours")
    with pytest.raises(FileExistsError):
        files.write_atomic(str(target), b"new")
    assert planted.read_bytes() == b"not ours" and not target.exists()


def test_write_atomic_replaces_the_file_with_umask_permissions(tmp_path):
    target = tmp_path / "out.o"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    umask = os.umask(0o022)
    try:
        files.write_atomic(str(target), b"new")
    finally:
        os.umask(umask)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.o"]
