"""The breaker's rules: repeated tool failures open it for a while, a good compile closes it."""

from __future__ import annotations

from llmcc import breaker


def test_failures_in_a_row_open_the_breaker_for_a_while():
    state = None
    for _ in range(breaker.FAILURES_TO_OPEN - 1):
        state = breaker.after_compile(state, failed=True, now=100.0)
        assert not breaker.is_open(state, 100.0)
    state = breaker.after_compile(state, failed=True, now=100.0)
    assert breaker.is_open(state, 100.0 + breaker.OPEN_SECONDS - 1)
    assert not breaker.is_open(state, 100.0 + breaker.OPEN_SECONDS + 1)
    # once it reopens for a try, one more failure is enough to open it again
    state = breaker.after_compile(state, failed=True, now=2000.0)
    assert breaker.is_open(state, 2001.0)


def test_a_compile_without_failure_closes_it_and_writes_only_when_needed():
    assert breaker.after_compile(None, failed=False, now=0.0) is None
    state = breaker.after_compile(None, failed=True, now=0.0)
    assert breaker.after_compile(state, failed=False, now=1.0) == {"failures": 0, "until": 0.0}


def test_a_changed_tool_has_a_new_key(tmp_path):
    tool = tmp_path / "opt"
    tool.write_text("one")
    before = breaker.tools_key(str(tool))
    tool.write_text("a repaired one")
    assert breaker.tools_key(str(tool)) != before
