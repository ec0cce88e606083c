"""Settings: defaults <- config.toml <- LLMCC_* environment, each value with its origin."""

from __future__ import annotations

import os

import platformdirs
import pytest

from llmcc import config
from llmcc.config import ConfigError, load, resolve


def test_defaults_apply_when_nothing_is_set():
    settings = resolve({}, "cfg.toml", {})
    assert settings.disable is False
    assert settings.advisor == "forest"
    assert settings.candidates == 3
    assert settings.levels == frozenset("sz")
    assert settings.cache_size == 5 << 30
    assert settings.direct_mode is True
    assert settings.timeout == 30.0
    assert set(settings.origins.values()) == {"default"}
    assert set(settings.origins) == {s.name for s in config.SETTINGS}


def test_config_file_overrides_defaults_and_is_named_as_the_origin():
    settings = resolve({"candidates": 5, "levels": "s,z,2", "direct_mode": False},
                       "/etc/llmcc.toml", {})
    assert settings.candidates == 5
    assert settings.levels == frozenset("sz2")
    assert settings.direct_mode is False
    assert settings.origins["candidates"] == "/etc/llmcc.toml"
    assert settings.origins["advisor"] == "default"


def test_environment_overrides_the_config_file():
    settings = resolve({"candidates": 5, "advisor": "none"}, "cfg.toml",
                       {"LLMCC_CANDIDATES": "7", "LLMCC_DISABLE": "yes"})
    assert settings.candidates == 7
    assert settings.origins["candidates"] == "environment LLMCC_CANDIDATES"
    assert settings.advisor == "none" and settings.origins["advisor"] == "cfg.toml"
    assert settings.disable is True and settings.origins["disable"] == "environment LLMCC_DISABLE"


@pytest.mark.parametrize("text, value", [("1024", 1024), ("500M", 500 << 20), ("5G", 5 << 30),
                                         ("2GiB", 2 << 30), ("1.5K", 1536), ("3gb", 3 << 30)])
def test_cache_size_accepts_units(text, value):
    assert resolve({}, "f", {"LLMCC_CACHE_SIZE": text}).cache_size == value


@pytest.mark.parametrize("text, value", [("1", True), ("true", True), ("ON", True), ("yes", True),
                                         ("0", False), ("false", False), ("off", False),
                                         ("", False)])
def test_booleans_accept_the_usual_spellings(text, value):
    assert resolve({}, "f", {"LLMCC_DISABLE": text}).disable is value


def test_empty_levels_turn_llmcc_off_for_every_level():
    assert resolve({}, "f", {"LLMCC_LEVELS": ""}).levels == frozenset()


@pytest.mark.parametrize("name, raw", [("candidates", "many"), ("candidates", "-1"),
                                       ("levels", "sx"), ("disable", "maybe"),
                                       ("cache_size", "lots"), ("timeout", "soon"),
                                       ("min_gain", "100"), ("min_gain", "-0.5")])
def test_bad_value_in_the_environment_names_the_variable(name, raw):
    variable = "LLMCC_" + name.upper()
    with pytest.raises(ConfigError) as caught:
        resolve({}, "cfg.toml", {variable: raw})
    assert f"environment {variable}" in str(caught.value)
    assert name in str(caught.value)


def test_bad_value_in_the_config_file_names_the_file():
    with pytest.raises(ConfigError) as caught:
        resolve({"candidates": "many"}, "/home/u/.config/llmcc/config.toml", {})
    assert "/home/u/.config/llmcc/config.toml" in str(caught.value)
    assert "candidates" in str(caught.value)


def test_bad_file_value_hidden_by_the_environment_is_not_an_error():
    """The environment layer wins, so the file's value is never parsed."""
    assert resolve({"candidates": "many"}, "cfg.toml", {"LLMCC_CANDIDATES": "2"}).candidates == 2


def test_unknown_setting_in_the_config_file_is_an_error_naming_the_file():
    with pytest.raises(ConfigError, match=r"cfg\.toml: unknown setting\(s\) candidtes"):
        resolve({"candidtes": 4}, "cfg.toml", {})


def test_load_reads_the_toml_file_named_by_llmcc_config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('advisor = "none"\ncandidates = 2\ndirect_mode = false\ntimeout = 2.5\n')
    settings = load({"LLMCC_CONFIG": str(path), "LLMCC_TIMEOUT": "4"})
    assert (settings.advisor, settings.candidates, settings.direct_mode) == ("none", 2, False)
    assert settings.origins["advisor"] == str(path)
    assert settings.timeout == 4.0 and settings.origins["timeout"] == "environment LLMCC_TIMEOUT"


def test_missing_config_file_means_defaults(tmp_path):
    settings = load({"LLMCC_CONFIG": str(tmp_path / "absent.toml")})
    assert set(settings.origins.values()) == {"default"}


@pytest.mark.parametrize("content", [b"candidates = = 3\n", b'advisor = "\xff"\n'],
                         ids=["not TOML", "not UTF-8"])
def test_malformed_config_file_is_a_config_error_naming_the_file(tmp_path, content):
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=str(path)):
        load({"LLMCC_CONFIG": str(path)})


def test_a_config_file_is_parsed_once_per_content(tmp_path, monkeypatch):
    import tomllib

    path, cache = tmp_path / "config.toml", tmp_path / "cache"
    environ = {"LLMCC_CONFIG": str(path), "LLMCC_CACHE_DIR": str(cache)}
    path.write_text('candidates = 2\nlevels = "sz"\n')
    first = load(environ)
    assert first.candidates == 2 and (cache / "config.marshal").exists()
    parse = tomllib.loads
    monkeypatch.setattr(tomllib, "loads", None)  # the same bytes are not parsed again
    assert load(environ).values == first.values
    monkeypatch.setattr(tomllib, "loads", parse)
    path.write_text("candidates = 4\n")  # other bytes are
    assert load(environ).candidates == 4
    (cache / "config.marshal").write_bytes(b"\xff junk")
    assert load(environ).candidates == 4  # a damaged memo only means parsing again
    path.write_text("candidates = = 4\n")
    with pytest.raises(ConfigError, match=str(path)):  # and never hides an error
        load(environ)


def test_an_empty_config_file_sets_nothing(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("")
    empty, absent = (load({"LLMCC_CONFIG": str(p)}) for p in (path, tmp_path / "absent.toml"))
    assert (empty.values, empty.origins) == (absent.values, absent.origins)
    assert set(empty.origins.values()) == {"default"}


def test_bad_value_in_a_loaded_file_names_that_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('levels = "fast"\n')
    with pytest.raises(ConfigError) as caught:
        load({"LLMCC_CONFIG": str(path)})
    assert str(path) in str(caught.value) and "levels" in str(caught.value)


def test_unreadable_config_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path)):
        load({"LLMCC_CONFIG": str(tmp_path)})  # a directory


def test_config_path_defaults_to_the_user_config_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    environ = dict(os.environ)
    assert config.config_path(environ) == str(tmp_path / "xdg" / "llmcc" / "config.toml")
    assert config.config_path({**environ, "LLMCC_CONFIG": "/x.toml"}) == "/x.toml"


def test_cache_dir_setting_wins_over_the_user_cache_dir(tmp_path):
    assert config.cache_dir(resolve({}, "f", {"LLMCC_CACHE_DIR": str(tmp_path)})) == str(tmp_path)


# platformdirs is imported here on purpose: llmcc spells the XDG rule out to avoid the import on
# every compiler call, and these tests keep the two in agreement.

@pytest.mark.parametrize("xdg", [None, "set"])
def test_user_config_dir_matches_platformdirs(monkeypatch, tmp_path, xdg):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if xdg:
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    else:
        monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert config._user_dir("config", dict(os.environ)) == platformdirs.user_config_dir("llmcc")


@pytest.mark.parametrize("xdg", [None, "set"])
def test_user_cache_dir_matches_platformdirs(monkeypatch, tmp_path, xdg):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if xdg:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    else:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert config._user_dir("cache", dict(os.environ)) == platformdirs.user_cache_dir("llmcc")


def test_empty_xdg_variable_falls_back_like_platformdirs(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert config._user_dir("cache", dict(os.environ)) == platformdirs.user_cache_dir("llmcc")
    assert platformdirs.user_cache_dir("llmcc") == str(tmp_path / "home" / ".cache" / "llmcc")
