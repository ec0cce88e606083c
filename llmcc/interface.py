"""What a candidate's object may change in a TU's interface, and why: one table, one rule.

A candidate replaces clang's object only where the program still links exactly as before: it
defines the same strong symbols, and whatever it needs that clang's object did not is something
every program that links this TU already has. The rule follows what the toolchain itself
relies on:

- `ALWAYS`: LLVM requires every environment, freestanding ones included, to provide memcpy,
  memmove and memset, and emits calls to them on its own (struct copies, zeroing loops).
- `C_LIBRARY`, in a hosted compile only (no -ffreestanding, -fno-builtin[-...], -nostdlib:
  `invocation.hosted`), and only for functions the TU's own frontend IR already declares: the
  source calls them, so the C library is linked, and -Oz had merely folded the call away
  (`strlen("abc")`, `memcmp` of constants) where a candidate kept it. libm is not in the table:
  its functions need `-lm`, which the program may not link.
- In a hosted C++ compile, two more kinds, each only if the TU's frontend IR declares it or
  defines it `available_externally` (a body kept for inlining only), and never one whose body
  there is always-inline (every list inlines those, and libstdc++ does not export them all):
  `CXX_RUNTIME`, the C++ standard library's and the C++ ABI's functions (namespace std,
  operator new and delete, `__cxa_*`), which the C++ driver links into every C++ program as
  the C driver links the C library, with libm (`LIBM`) and, in a TU with C++ exception
  handling, `_Unwind_Resume` (which code generation calls for a landing pad's `resume`, and
  which no IR declares); and any C++ (mangled) function the IR defines
  available_externally: a member of an `extern template` instantiation, which the C++
  standard requires the program to define once, by an explicit instantiation (libstdc++.so
  for std::string's: tests/test_interface.py checks its exports). Where -Oz inlined or folded
  away a call that a candidate keeps, the candidate calls that definition, as the same compile
  at -O0 always does. Not C's `inline`
  definitions, also available_externally: a C project may lack the external definition C
  requires and rely on -Oz inlining every call.
- COMDAT definitions (C++ inline functions and template instances, `DW.ref.__gxx_personality_v0`):
  weak and in a COMDAT group, emitted by every TU that uses them, one kept by the linker. A
  candidate may define more or fewer of them than clang's object.

Everything else is refused: a new reference to any other undefined function (a project may rely
on the optimiser to remove calls to a helper that exists nowhere, as kernel-style build
assertions do), a strong definition that appears or vanishes.
"""

from __future__ import annotations

from collections.abc import Callable

from llmcc.objfile import ObjectInfo

ALWAYS: dict[str, str] = {
    "memcpy": "LLVM emits it for struct copies and copy loops in any environment",
    "memmove": "LLVM emits it for overlapping copies in any environment",
    "memset": "LLVM emits it for zeroing and fill loops in any environment",
}

# The C library proper (ISO C, and the POSIX/GNU functions glibc's libc.so defines beside them),
# by header. Not libm (<math.h>, <complex.h>, <fenv.h>): those need -lm.
C_LIBRARY: dict[str, tuple[str, ...]] = {
    "string.h": (
        "memchr", "memcmp", "memcpy", "memmove", "memset", "strcat", "strchr", "strcmp",
        "strcoll", "strcpy", "strcspn", "strerror", "strlen", "strncat", "strncmp", "strncpy",
        "strpbrk", "strrchr", "strspn", "strstr", "strtok", "strxfrm",
        # POSIX and GNU, in libc.so
        "memccpy", "mempcpy", "memrchr", "stpcpy", "stpncpy", "strdup", "strndup", "strnlen",
        "strtok_r", "strsep", "strerror_r", "strcasestr", "strchrnul",
    ),
    "strings.h": ("bcmp", "bcopy", "bzero", "index", "rindex", "strcasecmp", "strncasecmp",
                  "ffs"),
    "stdlib.h": (
        "abort", "abs", "atexit", "atof", "atoi", "atol", "atoll", "bsearch", "calloc", "div",
        "exit", "free", "getenv", "labs", "ldiv", "llabs", "lldiv", "malloc", "qsort", "rand",
        "realloc", "srand", "strtod", "strtof", "strtol", "strtold", "strtoll", "strtoul",
        "strtoull", "system", "_Exit", "aligned_alloc", "quick_exit", "at_quick_exit",
        "posix_memalign", "reallocarray",
    ),
    "stdio.h": (
        "clearerr", "fclose", "feof", "ferror", "fflush", "fgetc", "fgetpos", "fgets", "fopen",
        "fprintf", "fputc", "fputs", "fread", "freopen", "fscanf", "fseek", "fsetpos", "ftell",
        "fwrite", "getc", "getchar", "perror", "printf", "putc", "putchar", "puts", "remove",
        "rename", "rewind", "scanf", "setbuf", "setvbuf", "snprintf", "sprintf", "sscanf",
        "tmpfile", "tmpnam", "ungetc", "vfprintf", "vfscanf", "vprintf", "vscanf", "vsnprintf",
        "vsprintf", "vsscanf",
        # POSIX, in libc.so
        "fdopen", "fileno", "getline", "getdelim", "dprintf", "vdprintf", "fputc_unlocked",
        "fputs_unlocked", "fwrite_unlocked", "putc_unlocked", "putchar_unlocked",
    ),
    "ctype.h": (
        "isalnum", "isalpha", "isblank", "iscntrl", "isdigit", "isgraph", "islower", "isprint",
        "ispunct", "isspace", "isupper", "isxdigit", "tolower", "toupper", "isascii", "toascii",
    ),
    "wchar.h": (
        "wcscat", "wcschr", "wcscmp", "wcscpy", "wcslen", "wcsncmp", "wcsncpy", "wcsrchr",
        "wmemchr", "wmemcmp", "wmemcpy", "wmemmove", "wmemset",
    ),
    "time.h": ("clock", "difftime", "mktime", "time", "asctime", "ctime", "gmtime", "localtime",
               "strftime"),
}
_C_LIBRARY_NAMES = frozenset(name for names in C_LIBRARY.values() for name in names)


# What a TU with C++ exception handling declares: the personality routine of its landing pads.
PERSONALITY = "__gxx_personality_v0"
# The C++ standard library and the C++ ABI's runtime (libstdc++ with libsupc++ and libgcc_s;
# libc++ with libc++abi), which the C++ driver links: names by their beginnings, by what they are.
CXX_RUNTIME: dict[str, tuple[str, ...]] = {
    "namespace std: functions, members, typeinfo, vtables": (
        "_ZSt", "_ZNSt", "_ZNKSt", "_ZTISt", "_ZTINSt", "_ZTSSt", "_ZTSNSt", "_ZTVSt",
        "_ZTVNSt"),
    "operator new and delete, every form": ("_Znw", "_Zna", "_Zdl", "_Zda"),
    "the C++ ABI: exceptions, guards of local statics, pure virtual calls": ("__cxa_",),
    "the C++ ABI: the vtables of typeinfo objects": ("_ZTVN10__cxxabiv1",),
    "the personality of C++ exception handling": (PERSONALITY,),
}
_CXX_RUNTIME_BEGINNINGS = tuple(b for beginnings in CXX_RUNTIME.values() for b in beginnings)
# libm (<math.h>), which the C++ driver also links into every C++ program (libstdc++ needs it):
# each function also with the f and l suffixes (sqrtf, sqrtl)
LIBM = ("acos", "asin", "atan", "atan2", "cos", "sin", "tan", "acosh", "asinh", "atanh", "cosh",
        "sinh", "tanh", "exp", "exp2", "expm1", "log", "log10", "log1p", "log2", "logb", "ilogb",
        "frexp", "ldexp", "modf", "scalbn", "scalbln", "cbrt", "fabs", "hypot", "pow", "sqrt",
        "erf", "erfc", "lgamma", "tgamma", "ceil", "floor", "nearbyint", "rint", "lrint",
        "llrint", "round", "lround", "llround", "trunc", "fmod", "remainder", "remquo",
        "copysign", "nan", "nextafter", "nexttoward", "fdim", "fmax", "fmin", "fma")
_LIBM_NAMES = frozenset(name + suffix for name in LIBM for suffix in ("", "f", "l"))
# what code generation calls to go on unwinding after a landing pad (libgcc_s, which the C++
# driver links): in the IR only as a `resume` instruction, never a declaration
UNWIND_RESUME = "_Unwind_Resume"


def cxx_runtime(name: str) -> bool:
    """A function or object of the C++ standard library or the C++ ABI's runtime."""
    return name.startswith(_CXX_RUNTIME_BEGINNINGS)


def _no_bodies() -> dict[str, bool]:
    return {}


def may_add(name: str, hosted: bool, declared: Callable[[], frozenset[str]],
            bodies: Callable[[], dict[str, bool] | None] = _no_bodies,
            cxx: bool = False) -> bool:
    """Whether a candidate may need `name` where clang's object did not.

    `declared()` gives the functions the TU's frontend IR declares or defines
    available_externally (as llvm-nm lists them), `bodies()` those it defines
    available_externally, each with whether it is always-inline
    (llmcc.summary.available_externally; None if the IR could not be read); each is asked only
    when the answer depends on it (reading the IR costs a process). `cxx`: the TU is C++.
    """
    if name in ALWAYS:
        return True
    if not hosted:
        return False
    if name in _C_LIBRARY_NAMES or (cxx and name in _LIBM_NAMES):
        return name in declared()
    if cxx and name == UNWIND_RESUME:  # a TU with C++ exception handling
        return PERSONALITY in declared()
    if not cxx or not (name.startswith("_Z") or cxx_runtime(name)):
        return False
    known = bodies()
    if known is None:  # the IR could not be read: whether the body is always-inline is unknown
        return False
    always_inline = known.get(name)
    if always_inline is not None:  # available_externally
        return name.startswith("_Z") and not always_inline
    return cxx_runtime(name) and name in declared()


def refusal(candidate: ObjectInfo, baseline: ObjectInfo, hosted: bool,
            declared: Callable[[], frozenset[str]],
            bodies: Callable[[], dict[str, bool] | None] = _no_bodies,
            cxx: bool = False) -> str | None:
    """Why `candidate` may not replace `baseline`, or None if it may (may_add's arguments)."""
    strong = candidate.defined - candidate.comdat
    baseline_strong = baseline.defined - baseline.comdat
    if strong != baseline_strong:
        lost = sorted(baseline_strong - strong)[:3]
        extra = sorted(strong - baseline_strong)[:3]
        return f"defines different symbols (missing {lost}, extra {extra})"
    new = sorted(name for name in candidate.undefined - baseline.undefined
                 if not may_add(name, hosted, declared, bodies, cxx))
    if new:
        return f"needs new symbols {new[:3]}"
    return None


def former_refusal(candidate: ObjectInfo, baseline: ObjectInfo) -> str | None:
    """The rule before the tables above: exactly the same definitions, nothing new needed.
    Kept only to measure what the tables add (the dataset's `size_former`, the differential's
    count of lists that pass now and were refused before)."""
    if candidate.defined != baseline.defined:
        return "defines different symbols"
    if candidate.undefined - baseline.undefined:
        return "needs new symbols"
    return None
