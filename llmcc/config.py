"""Settings: defaults <- config file <- environment (`LLMCC_*`), each with where it came from.

`resolve` is pure; `load` does the reading. Every compiler call, passthrough included, reads
the settings, so this module imports little.
"""

from __future__ import annotations

import marshal
import os
import sys
from _collections_abc import Callable  # collections.abc itself imports collections: ~3 ms a call


class ConfigError(Exception):
    """A setting has a value llmcc cannot use."""


def _boolean(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _size(text: str) -> int:
    """Bytes from `5G`, `500M`, `1024`."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = str(text).strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def _levels(text: str) -> frozenset[str]:
    """`sz` or `s,z,2` -> the optimisation levels llmcc takes over."""
    letters = frozenset(part for part in str(text).replace(",", "") if part.strip())
    unknown = letters - set("123sz")
    if unknown:
        raise ValueError(f"unknown levels {''.join(sorted(unknown))!r} (use letters from 123sz)")
    return letters


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _percent(text: str) -> float:
    value = float(text)
    if not 0 <= value < 100:
        raise ValueError("must be a percentage from 0 up to (not including) 100")
    return value


def _server_url(text: str) -> str:
    """A model server's address: llama.cpp-compatible servers speak plain HTTP."""
    text = str(text).strip().rstrip("/")
    if text and not text.startswith("http://"):
        raise ValueError(f"not an http://host:port address: {text!r}")
    return text


def _prompt_kind(text: str) -> str:
    text = str(text).strip()
    if text not in ("llmcc", "llm-compiler"):
        raise ValueError(f"{text!r} is neither llmcc nor llm-compiler")
    return text


def _cache_url(text: str) -> str:
    """A shared cache's address; only Redis is spoken."""
    text = str(text).strip()
    if text and not text.startswith(("redis://", "rediss://")):
        raise ValueError(f"not a redis:// or rediss:// address: {text!r}")
    return text


class Setting:
    """One setting: its name, default (as text, parsed like any other layer), parser and doc.

    A plain class, not a typing.NamedTuple: this module is imported by every compiler call.
    """

    __slots__ = ("default", "doc", "name", "parse")

    def __init__(self, name: str, default: str, parse: Callable[[str], object], doc: str) -> None:
        self.name, self.default, self.parse, self.doc = name, default, parse, doc

    @property
    def env(self) -> str:
        return "LLMCC_" + self.name.upper()


SETTINGS = (
    Setting("disable", "0", _boolean, "pass every call straight to the real clang"),
    Setting("clang", "", str, "the real clang (default: clang-19 on PATH, then /usr/lib/llvm-19/bin)"),
    Setting("opt", "", str, "the opt to run pass lists with (default: beside the real clang)"),
    Setting("advisor", "forest", str,
            "where candidate pass lists come from: popular, model, forest, none, search"),
    Setting("model", "", str, "the model advisor's GGUF file (default: the one llmcc ships)"),
    Setting("forest", "", str, "the forest advisor's file (default: the one llmcc ships)"),
    Setting("server", "", _server_url,
            "ask the model through this llama.cpp-compatible server first (http://host:port)"),
    Setting("model_server", "1", _boolean,
            "keep the model loaded in a per-user background server; 0: load it in each compile"),
    Setting("fork_server", "1", _boolean,
            "fork compiles from a per-user server with llmcc loaded; 0: each in its own process"),
    Setting("gpu_layers", "0", _positive_int, "model layers llama.cpp offloads to a GPU"),
    Setting("prompt", "llmcc", _prompt_kind,
            "how the model is asked: llmcc (a summary of the TU; llmcc's own models) or "
            "llm-compiler (the TU's IR in Meta's LLM Compiler prompt)"),
    Setting("candidates", "3", _positive_int, "how many candidate pass lists to try per TU"),
    Setting("min_gain", "0.1", _percent,
            "% of a TU's size: the forest tries no list it expects to save less"),
    Setting("levels", "sz", _levels, "optimisation levels llmcc takes over (letters of 123sz)"),
    Setting("cache", "1", _boolean,
            "use the decision cache; 0: compile without one, quietly (a read-only sandbox)"),
    Setting("cache_dir", "", str, "decision cache directory (default: the user cache dir)"),
    Setting("cache_size", "5G", _size, "cache size limit; older entries are evicted"),
    Setting("cache_url", "", _cache_url,
            "shared decision cache: redis://[user:password@]host:port/db or rediss://..."),
    Setting("direct_mode", "1", _boolean, "skip the frontend when the source and headers are unchanged"),
    Setting("log", "", str, "append one JSON line per compile to this file"),
    Setting("record", "", str, "save each TU's frontend IR and codegen arguments in this directory"),
    Setting("search_budget", "200", _positive_int, "evaluations per TU for the search advisor"),
    Setting("search_seconds", "300", float, "seconds per TU for the search advisor"),
    Setting("timeout", "30", float, "seconds one opt or codegen step may take before it is abandoned"),
)


class Settings:
    """Effective values (`settings.candidates`) and where each came from."""

    def __init__(self, values: dict[str, object], origins: dict[str, str]) -> None:
        self.values, self.origins = values, origins

    def __getattr__(self, name: str) -> object:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def resolve(file_values: dict[str, object], file_name: str, environ: dict[str, str]) -> Settings:
    """Merge the layers; raise ConfigError naming the layer that holds a bad value."""
    known = {s.name for s in SETTINGS}
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise ConfigError(f"{file_name}: unknown setting(s) {', '.join(unknown)}")
    values: dict[str, object] = {}
    origins: dict[str, str] = {}
    for setting in SETTINGS:
        raw, origin = setting.default, "default"
        if setting.name in file_values:
            raw, origin = file_values[setting.name], file_name
        if setting.env in environ:
            raw, origin = environ[setting.env], "environment " + setting.env
        try:
            values[setting.name] = setting.parse(raw if not isinstance(raw, bool) else str(raw))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{setting.name} = {raw!r} from {origin}: {err}") from None
        origins[setting.name] = origin
    return Settings(values, origins)


def _user_dir(kind: str, environ: dict[str, str]) -> str:
    """platformdirs' user config/cache dir for llmcc.

    On Linux this is the XDG rule, spelled out here because importing platformdirs costs more
    than the rest of a passthrough call; a test checks both agree.
    """
    if sys.platform.startswith("linux"):
        variable, fallback = {"config": ("XDG_CONFIG_HOME", ".config"),
                              "cache": ("XDG_CACHE_HOME", ".cache")}[kind]
        base = environ.get(variable, "").strip() or os.path.join(os.path.expanduser("~"),
                                                                  fallback)
        return os.path.join(base, "llmcc")
    import platformdirs

    return getattr(platformdirs, f"user_{kind}_dir")("llmcc")


def config_path(environ: dict[str, str]) -> str:
    """The config file: `LLMCC_CONFIG`, else config.toml in the user config dir."""
    return environ.get("LLMCC_CONFIG") or os.path.join(_user_dir("config", environ),
                                                       "config.toml")


def _parsed(path: str, text: bytes, environ: dict[str, str]) -> dict[str, object]:
    """The TOML in `text`, a config file's bytes. Importing tomllib costs about 20 ms a call
    here (it brings re, typing, string), more than the rest of a passthrough call, so what it
    made of the last content read is kept in the cache directory (LLMCC_CACHE_DIR, else the
    user cache dir: the file itself may not name another; marshal: built in, nothing to import)
    and used while the file holds exactly those bytes. A memo that cannot be read or written
    only means parsing again."""
    directory = environ.get("LLMCC_CACHE_DIR", "").strip() or _user_dir("cache", environ)
    memo = os.path.join(directory, "config.marshal")
    try:
        with open(memo, "rb") as handle:
            known = marshal.load(handle)
        if type(known) is tuple and len(known) == 2 and known[0] == text \
                and type(known[1]) is dict:
            return known[1]
    except (OSError, EOFError, ValueError, TypeError):
        pass
    import tomllib

    try:
        values = tomllib.loads(text.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: {err}") from None
    try:
        from llmcc.files import write_atomic

        data = marshal.dumps((text, values))  # ValueError: a TOML date, which no setting takes
        os.makedirs(os.path.dirname(memo), exist_ok=True)
        write_atomic(memo, data)
    except (OSError, ValueError):
        pass
    return values


def load(environ: dict[str, str] | None = None) -> Settings:
    environ = dict(os.environ) if environ is None else environ
    path = config_path(environ)
    file_values: dict[str, object] = {}
    try:
        with open(path, "rb") as handle:
            text = handle.read()
        if text:  # an empty file (/dev/null) sets nothing: no need to parse it
            file_values = _parsed(path, text, environ)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise ConfigError(f"{path}: {err}") from None
    return resolve(file_values, path, environ)


def cache_dir(settings: Settings) -> str:
    return settings.cache_dir or _user_dir("cache", dict(os.environ))
