"""read_object() must agree with llvm-size (Berkeley) and llvm-nm on real clang-19 objects."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import LLVM_BIN

from llmcc.objfile import NotAnObject, ObjectInfo, read_object

C_DATA = r"""
#include <stdio.h>
#include <string.h>
int initialised = 42;
long table[16] = {1, 2, 3};
const char message[] = "a read-only message that lands in .rodata";
static const int primes[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29};
int zeroed[100];
static char scratch[64];
_Thread_local int per_thread = 3;
_Thread_local int per_thread_zero;
__attribute__((weak)) int weak_value = 9;
__attribute__((weak)) int weak_function(int x) { return x + 1; }
extern void maybe_there(void) __attribute__((weak));
int alias_target(int x) { return x * 2; }
int aliased(int x) __attribute__((alias("alias_target")));
static int counter(void) { static int calls; return ++calls; }
__attribute__((constructor)) static void at_start(void) { zeroed[0] = counter(); }
int prime_sum(int n) {
    int s = 0;
    for (int i = 0; i < n && i < 10; i++) s += primes[i];
    return s;
}
void report(const char *what) {
    if (maybe_there) maybe_there();
    memcpy(scratch, what, strlen(what) % sizeof scratch);
    printf("%s %d %s\n", message, initialised + per_thread + weak_value, scratch);
}
"""

C_COMMON = r"""
int common_symbol;
int also_common[8];
int defined_here = 1;
extern int elsewhere;
int read_it(void) { return elsewhere + common_symbol + also_common[2] + defined_here; }
"""

CXX = r"""
#include <string>
#include <vector>
struct Shape { virtual ~Shape(); virtual int area() const = 0; };
Shape::~Shape() {}
struct Square : Shape { int side; explicit Square(int s) : side(s) {} int area() const override; };
int Square::area() const { return side * side; }
template <class T> T twice(T x) { return x + x; }
inline int seven_times(int x) { return x * 7; }
std::string greeting = "hello";
static std::vector<int> registry{1, 2, 3};
thread_local int tls_counter = 5;
int use(int a) { return twice(a) + seven_times(a) + int(twice<long>(a)) + Square(a).area(); }
template <class T> struct Holder { static T value; T get() const { return value; } };
template <class T> T Holder<T>::value = T(4);
int held() { return Holder<int>().get() + Holder<short>().get() + int(registry.size()); }
"""

SOURCES = {"data.c": C_DATA, "common.c": C_COMMON, "shapes.cc": CXX}

# (source, extra flags): a spread of what real builds produce.
BUILDS = [
    ("data.c", ["-Oz"]),
    ("data.c", ["-O0", "-g"]),
    ("data.c", ["-Os", "-fno-pic", "-ffunction-sections", "-fdata-sections"]),
    ("common.c", ["-Oz", "-fcommon"]),
    ("shapes.cc", ["-Oz"]),
    ("shapes.cc", ["-O2", "-fPIC", "-g"]),
]


def _tool(name: str) -> str:
    path = os.path.join(LLVM_BIN, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="module")
def objects(tmp_path_factory, clang, clangxx) -> dict[str, str]:
    """Each build in BUILDS compiled once by the real clang-19."""
    directory = tmp_path_factory.mktemp("objects")
    for name, text in SOURCES.items():
        (directory / name).write_text(text)
    built = {}
    for index, (source, flags) in enumerate(BUILDS):
        compiler = clangxx if source.endswith(".cc") else clang
        output = directory / f"{index}.o"
        subprocess.run([compiler, *flags, "-c", source, "-o", output.name], cwd=directory,
                       check=True)
        built[_build_id(source, flags)] = str(output)
    return built


def _build_id(source: str, flags: list[str]) -> str:
    return " ".join([source, *flags])


def _berkeley(path: str) -> tuple[int, int, int]:
    out = subprocess.run([_tool("llvm-size"), path], capture_output=True, text=True,
                         check=True).stdout
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["text", "data", "bss"]
    text, data, bss = (int(field) for field in row.split()[:3])
    return text, data, bss


def _nm(path: str, *selection: str) -> frozenset[str]:
    out = subprocess.run([_tool("llvm-nm"), "--extern-only", "--just-symbol-name", *selection,
                          path], capture_output=True, text=True, check=True).stdout
    return frozenset(line for line in out.splitlines() if line)


def _read(path: str) -> ObjectInfo:
    with open(path, "rb") as handle:
        return read_object(handle.read())


@pytest.mark.parametrize("source, flags", BUILDS, ids=[_build_id(*b) for b in BUILDS])
def test_sizes_match_llvm_size_berkeley(objects, source, flags):
    path = objects[_build_id(source, flags)]
    info = _read(path)
    assert (info.text, info.data, info.bss) == _berkeley(path)


@pytest.mark.parametrize("source, flags", BUILDS, ids=[_build_id(*b) for b in BUILDS])
def test_defined_symbols_match_llvm_nm(objects, source, flags):
    path = objects[_build_id(source, flags)]
    assert _read(path).defined == _nm(path, "--defined-only")


@pytest.mark.parametrize("source, flags", BUILDS, ids=[_build_id(*b) for b in BUILDS])
def test_undefined_symbols_match_llvm_nm(objects, source, flags):
    path = objects[_build_id(source, flags)]
    assert _read(path).undefined == _nm(path, "--undefined-only")


def test_size_is_text_plus_data_without_bss(objects):
    info = _read(objects[_build_id("data.c", ["-Oz"])])
    assert info.bss > 0 and info.data > 0
    assert info.size == info.text + info.data


def test_symbols_include_weak_aliases_and_exclude_statics(objects):
    info = _read(objects[_build_id("data.c", ["-Oz"])])
    assert {"weak_value", "weak_function", "aliased", "alias_target", "per_thread",
            "initialised", "zeroed", "message"} <= info.defined
    assert {"maybe_there", "printf", "strlen"} <= info.undefined
    assert not {"scratch", "primes", "counter", "at_start"} & (info.defined | info.undefined)


def test_constructor_array_counts_as_data(objects):
    """.init_array is allocated and writable: llvm-size puts it in data, and so must llmcc."""
    path = objects[_build_id("shapes.cc", ["-Oz"])]
    sections = subprocess.run([_tool("llvm-readelf"), "-S", "-W", path], capture_output=True,
                              text=True, check=True).stdout
    assert ".init_array" in sections
    assert _read(path).data == _berkeley(path)[1]


def test_something_other_than_an_elf_object_is_rejected(tmp_path, clang):
    (tmp_path / "a.c").write_text("int x;\n")
    subprocess.run([clang, "-c", "-emit-llvm", "a.c", "-o", "a.bc"], cwd=tmp_path, check=True)
    with pytest.raises(NotAnObject):
        read_object((tmp_path / "a.bc").read_bytes())
    with pytest.raises(NotAnObject):
        read_object(b"int x;\n")


def test_comdat_definitions_are_told_apart_from_strong_ones(tmp_path, clang):
    """C++ inline functions and template instances are weak, in a COMDAT group."""
    (tmp_path / "t.cc").write_text("template <class T> T twice(T v) { return v + v; }\n"
                                   "inline int once(int x) { return x; }\n"
                                   "int api(int x) { return twice(x) + once(x); }\n")
    subprocess.run([clang, "-O0", "-c", "t.cc"], cwd=tmp_path, check=True)
    info = _read(str(tmp_path / "t.o"))
    assert {"_Z5twiceIiET_S0_", "_Z4oncei"} == info.comdat
    assert "_Z3apii" in info.defined - info.comdat


@pytest.mark.parametrize("cut", [3, 10, 64, 200])
def test_a_truncated_object_is_not_an_object(cut, tmp_path, clang):
    """Garbage from a broken codegen step is rejected, never measured as a tiny object."""
    source = tmp_path / "t.c"
    source.write_text("int f(int x) { return x + 1; }\n")
    subprocess.run([clang, "-Oz", "-c", str(source), "-o", str(tmp_path / "t.o")], check=True)
    blob = (tmp_path / "t.o").read_bytes()
    with pytest.raises(NotAnObject):
        read_object(blob[:cut])
