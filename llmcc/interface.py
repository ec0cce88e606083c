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


def may_add(name: str, hosted: bool, declared: Callable[[], frozenset[str]]) -> bool:
    """Whether a candidate may need `name` where clang's object did not.

    `declared()` gives the functions the TU's frontend IR declares; it is asked only when the
    answer depends on it (reading it costs a process).
    """
    if name in ALWAYS:
        return True
    return hosted and name in _C_LIBRARY_NAMES and name in declared()


def refusal(candidate: ObjectInfo, baseline: ObjectInfo, hosted: bool,
            declared: Callable[[], frozenset[str]]) -> str | None:
    """Why `candidate` may not replace `baseline`, or None if it may."""
    strong = candidate.defined - candidate.comdat
    baseline_strong = baseline.defined - baseline.comdat
    if strong != baseline_strong:
        lost = sorted(baseline_strong - strong)[:3]
        extra = sorted(strong - baseline_strong)[:3]
        return f"defines different symbols (missing {lost}, extra {extra})"
    new = sorted(name for name in candidate.undefined - baseline.undefined
                 if not may_add(name, hosted, declared))
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
