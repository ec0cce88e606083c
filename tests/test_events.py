"""The LLMCC_LOG line writer: json.dumps's text, without importing json."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmcc import events

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner) | st.tuples(inner, inner)
                      | st.dictionaries(st.text(), inner), max_leaves=20)


@given(VALUES)
def test_to_json_writes_what_json_dumps_writes(value):
    assert events.to_json(value) == json.dumps(value, separators=(",", ":"))


def test_a_log_line_falls_back_to_json_for_what_to_json_does_not_write(tmp_path):
    path = str(tmp_path / "log")
    events.log(path, {"outcome": "miss", "stages": {"total": 0.25}, "args": ("-c", "é.c")})
    events.log(path, {1: "key that is not a string", None: [True]})
    with open(path) as handle:
        lines = handle.read().splitlines()
    assert lines == ['{"outcome":"miss","stages":{"total":0.25},"args":["-c","\\u00e9.c"]}',
                     '{"1":"key that is not a string","null":[true]}']
    with pytest.raises(TypeError):
        events.log(path, {"a set": {1}})
