"""End to end: real projects built through llmcc with their own build systems and test suites.

Each test builds something a user would build (zlib with autoconf-style configure, jansson
with CMake, a C++ program, a parallel make, a ccache setup) and checks what a user relies on:
the build succeeds, the project's tests pass, objects are never larger than plain clang's,
and caches never hand back a wrong or stale object.

Debian source packages are downloaded once into ~/.cache/llmcc-tests/sources (or
$XDG_CACHE_HOME/llmcc-tests/sources) and reused by later sessions.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import (
    INTERCEPTED,
    REPO,
    assert_advised_by,
    assert_no_larger,
    collect_objects,
    extract,
    intercepted_outputs,
    need_tool,
    read_log,
    report_sizes,
    run_ok,
    zlib_tested_with,
)

from llmcc import events

pytestmark = pytest.mark.slow


def _write(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


# --- a small C project: distinct TUs plus one source compiled to several objects -------------

DUPLICATES = 6  # piece.c is compiled to dup1.o .. dup6.o with identical arguments but -o

C_PROJECT = {
    "registry.h": """\
#ifndef REGISTRY_H
#define REGISTRY_H
void register_piece(unsigned long value);
int pieces(void);
unsigned long pieces_total(void);
unsigned long crc32_of(const char *text);
void sort_ints(int *values, int count);
#endif
""",
    "piece.c": """\
#include "registry.h"
/* Only static symbols: every copy links, and each constructor registers itself. */
static const unsigned char table[] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3,
                                      2, 3, 8, 4, 6, 2, 6, 4, 3, 3, 8, 3, 2, 7, 9, 5};
static unsigned long checksum(void) {
    unsigned long sum = 0;
    for (unsigned i = 0; i < sizeof table; i++) {
        switch (table[i] % 3) {
        case 0: sum += table[i] * (i + 1); break;
        case 1: sum ^= (unsigned long)table[i] << (i % 7); break;
        default: sum = sum * 3 + table[i]; break;
        }
    }
    return sum;
}
__attribute__((constructor)) static void add_piece(void) { register_piece(checksum()); }
""",
    "registry.c": """\
#include "registry.h"
static unsigned long total;
static int count;
void register_piece(unsigned long value) { total += value; count++; }
int pieces(void) { return count; }
unsigned long pieces_total(void) { return total; }
""",
    "crc.c": """\
#include "registry.h"
unsigned long crc32_of(const char *text) {
    unsigned long crc = 0xFFFFFFFFul;
    for (; *text; text++) {
        crc ^= (unsigned char)*text;
        for (int bit = 0; bit < 8; bit++)
            crc = (crc >> 1) ^ (0xEDB88320ul & (0ul - (crc & 1)));
    }
    return crc ^ 0xFFFFFFFFul;
}
""",
    "sort.c": """\
#include "registry.h"
void sort_ints(int *values, int count) {
    for (int i = 1; i < count; i++) {
        int v = values[i], j = i - 1;
        while (j >= 0 && values[j] > v) { values[j + 1] = values[j]; j--; }
        values[j + 1] = v;
    }
}
""",
    "main.c": """\
#include <stdio.h>
#include "registry.h"
int main(void) {
    int values[] = {9, 3, 8, 1, 5, 2};
    sort_ints(values, 6);
    printf("pieces=%d total=%lu\\n", pieces(), pieces_total());
    printf("crc=%08lx\\n", crc32_of("123456789"));
    printf("sorted=");
    for (int i = 0; i < 6; i++) printf("%d%s", values[i], i < 5 ? " " : "\\n");
    return 0;
}
""",
    "Makefile": """\
DUPS = {dups}
OBJS = main.o registry.o crc.o sort.o $(DUPS)
prog: $(OBJS)
\t$(CC) -o $@ $(OBJS)
$(DUPS): piece.c registry.h
\t$(CC) $(CFLAGS) -c piece.c -o $@
%.o: %.c registry.h
\t$(CC) $(CFLAGS) -c $< -o $@
clean:
\trm -f prog *.o *.d
.PHONY: clean
""".replace("{dups}", " ".join(f"dup{i}.o" for i in range(1, DUPLICATES + 1))),
}
C_PROJECT_OBJECTS = 4 + DUPLICATES
C_PROJECT_DISTINCT = 5  # compiles that differ in more than -o: ccache serves the other dups


def _piece_checksum() -> int:
    """What piece.c's checksum() computes, worked out independently."""
    table = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3,
             2, 3, 8, 4, 6, 2, 6, 4, 3, 3, 8, 3, 2, 7, 9, 5]
    total = 0
    for i, value in enumerate(table):
        if value % 3 == 0:
            total += value * (i + 1)
        elif value % 3 == 1:
            total ^= value << (i % 7)
        else:
            total = total * 3 + value
    return total


C_PROJECT_OUTPUT = (f"pieces={DUPLICATES} total={DUPLICATES * _piece_checksum()}\n"
                    "crc=cbf43926\nsorted=1 2 3 5 8 9\n").encode()


# --- tests -----------------------------------------------------------------------------------

def test_zlib_configure_make_test_passes_and_objects_are_never_larger(
        tmp_path, env, llmcc, clang, debian_source):
    ours_objects, plain_objects = zlib_tested_with(llmcc, clang, debian_source, tmp_path, env)
    total, plain_total = assert_no_larger(ours_objects, plain_objects)
    assert total <= plain_total
    report_sizes(f"zlib ({len(plain_objects)} objects, -Oz)", total, plain_total)


def test_jansson_cmake_toolchain_file_builds_and_ctest_passes(tmp_path, env, advisor,
                                                             debian_source):
    cmake, ctest = need_tool("cmake"), need_tool("ctest")
    source = extract(debian_source("jansson"), tmp_path / "src")
    build = tmp_path / "build"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    toolchain = os.path.join(REPO, "shims", "llmcc.cmake")
    run_ok([cmake, "-S", str(source), "-B", str(build), *generator,
         f"-DCMAKE_TOOLCHAIN_FILE={toolchain}",
         "-DCMAKE_BUILD_TYPE=MinSizeRel", "-DJANSSON_BUILD_DOCS=OFF"], tmp_path, env)
    run_ok([cmake, "--build", str(build), "-j2"], tmp_path, env)
    ctest_output = run_ok([ctest, "--output-on-failure", "-j2"], build, env)
    assert b"100% tests passed" in ctest_output

    objects = collect_objects(build)
    assert "CMakeFiles/jansson.dir/src/load.c.o" in objects
    intercepted = intercepted_outputs(env["LLMCC_LOG"])
    missing = sorted(set(objects) - set(intercepted))
    assert not missing, f"objects not compiled through the llmcc launcher: {missing}"
    assert set(intercepted.values()) <= {events.MISS, events.HIT}  # a cold cache, one build
    assert_advised_by(env, advisor)


CXX_PROJECT = {
    "shapes.hpp": """\
#pragma once
#include <memory>
#include <string>
#include <vector>
class Shape {
public:
    explicit Shape(std::string name) : name_(std::move(name)) {}
    virtual ~Shape() = default;
    virtual double area() const = 0;
    const std::string &name() const { return name_; }
private:
    std::string name_;
};
class Rect : public Shape {
public:
    Rect(double w, double h) : Shape("rect"), w_(w), h_(h) {}
    double area() const override;
private:
    double w_, h_;
};
class Square : public Rect {
public:
    explicit Square(double side) : Rect(side, side) {}
};
std::vector<std::unique_ptr<Shape>> make_shapes(const std::vector<double> &sides);
std::string describe(const Shape &shape);
""",
    "stack.hpp": """\
#pragma once
#include <stdexcept>
#include <vector>
template <typename T> class Stack {
public:
    void push(T value) { items_.push_back(std::move(value)); }
    T pop() {
        if (items_.empty()) throw std::out_of_range("pop from an empty stack");
        T top = std::move(items_.back());
        items_.pop_back();
        return top;
    }
    bool empty() const { return items_.empty(); }
    std::size_t size() const { return items_.size(); }
private:
    std::vector<T> items_;
};
""",
    "text.hpp": """\
#pragma once
#include <string>
#include <vector>
std::vector<std::string> split(const std::string &text, char sep);
std::string join(const std::vector<std::string> &parts, const std::string &sep);
""",
    "shapes.cpp": """\
#include "shapes.hpp"
#include <cstdio>
double Rect::area() const { return w_ * h_; }
std::vector<std::unique_ptr<Shape>> make_shapes(const std::vector<double> &sides) {
    std::vector<std::unique_ptr<Shape>> shapes;
    for (double side : sides) {
        if (side < 0) shapes.push_back(std::make_unique<Rect>(-side, 2.0));
        else shapes.push_back(std::make_unique<Square>(side));
    }
    return shapes;
}
std::string describe(const Shape &shape) {
    char area[32];
    std::snprintf(area, sizeof area, "%.1f", shape.area());
    return shape.name() + "(" + area + ")";
}
""",
    "text.cpp": """\
#include "text.hpp"
std::vector<std::string> split(const std::string &text, char sep) {
    std::vector<std::string> parts(1);
    for (char c : text) {
        if (c == sep) parts.emplace_back();
        else parts.back() += c;
    }
    return parts;
}
std::string join(const std::vector<std::string> &parts, const std::string &sep) {
    std::string out;
    for (std::size_t i = 0; i < parts.size(); i++) out += (i ? sep : "") + parts[i];
    return out;
}
""",
    "main.cpp": """\
#include <iostream>
#include <string>
#include "shapes.hpp"
#include "stack.hpp"
#include "text.hpp"
int main() {
    Stack<std::string> words;
    for (const std::string &word : split("alpha,beta,gamma", ',')) words.push(word);
    std::vector<std::string> reversed;
    while (!words.empty()) reversed.push_back(words.pop());
    std::cout << join(reversed, "+") << "\\n";
    try {
        words.pop();
    } catch (const std::out_of_range &err) {
        std::cout << "caught: " << err.what() << "\\n";
    }
    Stack<int> numbers;
    for (int i = 1; i <= 4; i++) numbers.push(i * i);
    int sum = 0;
    while (!numbers.empty()) sum += numbers.pop();
    std::cout << "sum=" << sum << "\\n";
    std::vector<std::string> described;
    for (const auto &shape : make_shapes({1.5, -3.0, 2.0})) described.push_back(describe(*shape));
    std::cout << join(described, " ") << "\\n";
}
""",
    "Makefile": """\
OBJS = main.o shapes.o text.o
prog: $(OBJS)
\t$(CXX) -o $@ $(OBJS)
%.o: %.cpp shapes.hpp stack.hpp text.hpp
\t$(CXX) $(CXXFLAGS) -c $< -o $@
""",
}
CXX_OUTPUT = (b"gamma+beta+alpha\ncaught: pop from an empty stack\nsum=30\n"
              b"rect(2.2) rect(6.0) rect(4.0)\n")


def test_cxx_project_links_runs_and_objects_are_never_larger(tmp_path, env, llmccxx, clangxx):
    make = need_tool("make")
    ours, plain = tmp_path / "llmcc", tmp_path / "plain"
    _write(ours, CXX_PROJECT)
    _write(plain, CXX_PROJECT)
    run_ok([make, f"CXX={llmccxx}", "CXXFLAGS=-Oz"], ours, env)
    run_ok([make, f"CXX={clangxx}", "CXXFLAGS=-Oz"], plain, env)

    assert run_ok([str(ours / "prog")], ours, env) == CXX_OUTPUT
    assert run_ok([str(plain / "prog")], plain, env) == CXX_OUTPUT
    intercepted = intercepted_outputs(env["LLMCC_LOG"])
    assert intercepted == {"main.o": events.MISS, "shapes.o": events.MISS,
                           "text.o": events.MISS}
    total, plain_total = assert_no_larger(collect_objects(ours), collect_objects(plain))
    report_sizes("C++ project (3 objects, -Oz)", total, plain_total)


def test_parallel_make_cold_cache_gives_the_same_bytes_as_serial_and_then_all_hits(
        tmp_path, env, llmcc):
    make = need_tool("make")
    project = tmp_path / "project"
    _write(project, C_PROJECT)
    # -MD, not -MMD: llmcc's direct mode needs the system headers listed (see driver.py)
    build = [make, f"CC={llmcc}", "CFLAGS=-Oz -MD"]

    def built(jobs: str, cache: str, log: str) -> dict[str, bytes]:
        run_ok([make, "clean"], project, env)
        step_env = {**env, "LLMCC_CACHE_DIR": str(tmp_path / cache),
                    "LLMCC_LOG": str(tmp_path / log)}
        run_ok([*build, jobs], project, step_env)
        assert run_ok([str(project / "prog")], project, env) == C_PROJECT_OUTPUT
        return collect_objects(project, ("*.o", "*.d"))

    serial = built("-j1", "serial-cache", "serial.log")
    cold = built("-j4", "shared-cache", "cold.log")
    assert len(serial) == 2 * C_PROJECT_OBJECTS
    assert cold.keys() == serial.keys()
    differing = sorted(name for name in serial if cold[name] != serial[name])
    assert not differing, f"a cold -j4 build wrote different bytes: {differing}"
    cold_outcomes = intercepted_outputs(str(tmp_path / "cold.log"))
    assert len(cold_outcomes) == C_PROJECT_OBJECTS
    # the duplicates share one IR key: whichever finished first may have served the others
    assert set(cold_outcomes.values()) <= {events.MISS, events.HIT}

    warm = built("-j4", "shared-cache", "warm.log")
    warm_events = [e for e in read_log(str(tmp_path / "warm.log")) if e["outcome"] != events.PASSTHROUGH]
    assert sorted(e["output"] for e in warm_events) == sorted(
        name for name in serial if name.endswith(".o"))
    assert {e["outcome"] for e in warm_events} == {events.DIRECT_HIT}
    differing = sorted(name for name in serial if warm[name] != serial[name])
    assert not differing, f"a warm -j4 build wrote different bytes: {differing}"


def _ccache_counters(ccache: str, env: dict[str, str]) -> dict[str, int]:
    out = run_ok([ccache, "--print-stats"], None, env).decode()
    counters = dict(line.split("\t") for line in out.splitlines() if "\t" in line)
    return {name: int(value) for name, value in counters.items()}


def _ccache_hits(counters: dict[str, int]) -> int:
    return counters["direct_cache_hit"] + counters["preprocessed_cache_hit"]


def test_ccache_over_llmcc_hits_on_rebuild_and_misses_when_llmcc_settings_change(
        tmp_path, env, llmcc, llmcc_ctl):
    make, ccache = need_tool("make"), need_tool("ccache")
    project = tmp_path / "project"
    _write(project, C_PROJECT)
    base_env = {**env, "CCACHE_DIR": str(tmp_path / "ccache"),
                "CCACHE_COMPILERCHECK": "llmcc-ctl id"}
    build = [make, f"CC={ccache} {llmcc}", "CFLAGS=-Oz"]
    log = env["LLMCC_LOG"]

    def rebuild(step_env: dict[str, str]) -> tuple[int, int, int]:
        """Clean build: (ccache hits, ccache misses, compiles llmcc itself did) during it."""
        run_ok([make, "clean"], project, step_env)
        run_ok([ccache, "--zero-stats"], project, step_env)
        before = len([e for e in read_log(log) if e["outcome"] in INTERCEPTED])
        run_ok(build, project, step_env)
        assert run_ok([str(project / "prog")], project, step_env) == C_PROJECT_OUTPUT
        after = len([e for e in read_log(log) if e["outcome"] in INTERCEPTED])
        counters = _ccache_counters(ccache, step_env)
        assert counters["compiler_check_failed"] == 0
        return _ccache_hits(counters), counters["cache_miss"], after - before

    # cold: each distinct compile misses; the duplicates differ only in -o, so ccache serves them
    distinct, dups = C_PROJECT_DISTINCT, C_PROJECT_OBJECTS - C_PROJECT_DISTINCT
    assert rebuild(base_env) == (dups, distinct, distinct)
    through_ccache = collect_objects(project)

    # the same objects as llmcc alone (own cache) makes: ccache changed nothing
    run_ok([make, "clean"], project, env)
    run_ok([make, f"CC={llmcc}", "CFLAGS=-Oz"], project,
        {**env, "LLMCC_CACHE_DIR": str(tmp_path / "direct-cache"),
         "LLMCC_LOG": str(tmp_path / "direct.log")})
    assert collect_objects(project) == through_ccache

    # rebuilt after make clean: every object from ccache, llmcc never runs
    assert rebuild(base_env) == (C_PROJECT_OBJECTS, 0, 0)
    assert collect_objects(project) == through_ccache

    # what decides llmcc's output changes: `llmcc-ctl id` changes, so ccache must not reuse
    identity = run_ok([llmcc_ctl, "id"], tmp_path, base_env)
    for change in ({"LLMCC_CANDIDATES": "0"}, {"LLMCC_ADVISOR": "none"}):
        changed_env = {**base_env, **change}
        assert run_ok([llmcc_ctl, "id"], tmp_path, changed_env) != identity, change
        assert rebuild(changed_env) == (dups, distinct, distinct), change

    # back to the original settings: the original objects are still in ccache
    assert rebuild(base_env) == (C_PROJECT_OBJECTS, 0, 0)
    assert collect_objects(project) == through_ccache
