"""Facts about clang's command-line options, as data.

The logic in `invocation.py` asks this table questions and never spells a flag itself
(the ccache `compopt` idea). An option is looked up by its exact spelling first, then by
the longest matching prefix: an option with a glued value or a family in `FAMILIES`. Anything the table does not know is treated as
too hard, so the real clang sees it unchanged.
"""

from __future__ import annotations


class Opt:
    """What llmcc needs to know about one option: bits of an int. (Plain ints, not an IntFlag:
    importing enum costs every passthrough call a few milliseconds.)"""

    NONE = 0
    TAKES_ARG = 1  # the value may follow as the next argument: `-o out.o`
    TAKES_CONCAT_ARG = 2  # the value may be glued on: `-oout.o`, `-DX=1`
    AFFECTS_CPP = 4  # only the preprocessor/frontend cares: dropped when compiling IR
    TOO_HARD = 8  # llmcc does not fully understand it: the real clang gets the call
    DEPFILE = 16  # part of depfile generation (-MD and friends)
    OUTPUT = 32  # names the output file
    LANGUAGE = 64  # `-x`: the language of the inputs that follow
    COMPILE_ONLY = 128  # `-c`
    OPT_LEVEL = 256  # `-O<level>`
    PIC = 512  # chooses the relocation model (the last one wins)
    FREESTANDING = 1024  # the program may not have the C library: see interface.py


_ARG = Opt.TAKES_ARG | Opt.TAKES_CONCAT_ARG
_CPP_ARG = _ARG | Opt.AFFECTS_CPP

# Exact spellings. Kept sorted; `tests/test_options.py` checks the table itself.
OPTIONS: dict[str, int] = {
    "-###": Opt.TOO_HARD,
    "--": Opt.TOO_HARD,
    "--analyze": Opt.TOO_HARD,
    "--config": Opt.TOO_HARD | Opt.TAKES_ARG,
    "--help": Opt.TOO_HARD,
    "--param": Opt.TOO_HARD | Opt.TAKES_ARG,
    "--save-temps": Opt.TOO_HARD,
    "--serialize-diagnostics": Opt.TOO_HARD | Opt.TAKES_ARG,
    "--version": Opt.TOO_HARD,
    "-B": Opt.TOO_HARD | _ARG,
    "-C": Opt.AFFECTS_CPP,
    "-CC": Opt.AFFECTS_CPP,
    "-D": _CPP_ARG,
    "-E": Opt.TOO_HARD,
    "-F": _CPP_ARG,
    "-H": Opt.TOO_HARD,
    "-I": _CPP_ARG,
    "-I-": Opt.TOO_HARD,
    "-L": _ARG,
    "-M": Opt.TOO_HARD,
    "-MD": Opt.DEPFILE | Opt.AFFECTS_CPP,
    "-MF": Opt.DEPFILE | _CPP_ARG,
    "-MG": Opt.DEPFILE | Opt.AFFECTS_CPP,
    "-MJ": Opt.TOO_HARD | _ARG,
    "-MM": Opt.TOO_HARD,
    "-MMD": Opt.DEPFILE | Opt.AFFECTS_CPP,
    "-MP": Opt.DEPFILE | Opt.AFFECTS_CPP,
    "-MQ": Opt.DEPFILE | _CPP_ARG,
    "-MT": Opt.DEPFILE | _CPP_ARG,
    "-MV": Opt.DEPFILE | Opt.AFFECTS_CPP,
    "-P": Opt.AFFECTS_CPP,
    "-Qunused-arguments": Opt.NONE,
    "-S": Opt.TOO_HARD,
    "-T": _ARG,
    "-U": _CPP_ARG,
    "-Xassembler": Opt.TOO_HARD | Opt.TAKES_ARG,
    "-Xclang": Opt.TOO_HARD | Opt.TAKES_ARG,
    "-Xlinker": Opt.TAKES_ARG,
    "-Xpreprocessor": Opt.TOO_HARD | Opt.TAKES_ARG,
    "-ansi": Opt.NONE,
    "-arch": Opt.TOO_HARD | Opt.TAKES_ARG,
    "-c": Opt.COMPILE_ONLY,
    "-dumpmachine": Opt.TOO_HARD,
    "-dumpversion": Opt.TOO_HARD,
    "-emit-llvm": Opt.TOO_HARD,
    "-fPIC": Opt.PIC,
    "-fPIE": Opt.PIC,
    "-femit-compact-unwind-non-canonical": Opt.TOO_HARD,  # unused (warned) by -emit-llvm
    "-ffreestanding": Opt.FREESTANDING,
    # The pass that turns this attribute into calls runs in every candidate (passes.PIPELINE_START);
    # tests/test_flag_sweep.py checks it and every other intercepted option that way.
    "-finstrument-functions": Opt.NONE,
    "-fno-PIC": Opt.PIC,
    "-fno-PIE": Opt.PIC,
    "-fno-builtin": Opt.FREESTANDING,
    "-fno-emit-compact-unwind-non-canonical": Opt.TOO_HARD,  # likewise
    "-fno-pic": Opt.PIC,
    "-fno-pie": Opt.PIC,
    "-fpic": Opt.PIC,
    "-fpie": Opt.PIC,
    "-frecord-command-line": Opt.TOO_HARD,  # would record llmcc's frontend call
    "-frecord-gcc-switches": Opt.TOO_HARD,  # likewise
    "-fseh-exceptions": Opt.TOO_HARD,  # exception models are lost when compiling IR
    "-fsjlj-exceptions": Opt.TOO_HARD,  # likewise
    "-fsyntax-only": Opt.TOO_HARD,
    "-fwasm-exceptions": Opt.TOO_HARD,  # likewise
    "-grecord-command-line": Opt.TOO_HARD,  # would record llmcc's frontend call
    "-grecord-gcc-switches": Opt.TOO_HARD,  # likewise
    "-idirafter": _CPP_ARG,
    "-imacros": _CPP_ARG,
    "-include": _CPP_ARG,
    "-iprefix": _CPP_ARG,
    "-iquote": _CPP_ARG,
    "-isysroot": _CPP_ARG,
    "-isystem": _CPP_ARG,
    "-isystem-after": _CPP_ARG,
    "-iwithprefix": _CPP_ARG,
    "-iwithprefixbefore": _CPP_ARG,
    "-l": _ARG,
    "-mkernel": Opt.TOO_HARD,
    "-mllvm": Opt.TOO_HARD | Opt.TAKES_ARG,
    "-no-integrated-as": Opt.TOO_HARD,
    "-nostdinc": Opt.AFFECTS_CPP,
    "-nostdinc++": Opt.AFFECTS_CPP,
    "-nostdlib": Opt.FREESTANDING,
    "-o": Opt.OUTPUT | _ARG,
    "-pedantic": Opt.NONE,
    "-pedantic-errors": Opt.NONE,
    "-pg": Opt.TOO_HARD,  # profiling (mcount): passed through, like the -fprofile options
    "-pipe": Opt.NONE,
    "-pthread": Opt.NONE,
    "-rdynamic": Opt.NONE,
    "-save-temps": Opt.TOO_HARD,
    "-shared": Opt.NONE,
    "-static": Opt.TOO_HARD,
    "-target": Opt.TOO_HARD | Opt.TAKES_ARG,
    "-u": _ARG,
    "-undef": Opt.AFFECTS_CPP,
    "-v": Opt.TOO_HARD,
    "-w": Opt.NONE,
    "-x": Opt.LANGUAGE | _ARG,
}

# Prefixes for whole families of options (`-W…`, `-f…`, `-O…`). The longest match wins, so a
# narrower entry such as `-fsanitize` overrides `-f`. Values glued to the prefix belong to it.
FAMILIES: dict[str, int] = {
    "--coverage": Opt.TOO_HARD,
    "--gcc-toolchain=": Opt.TOO_HARD,
    "--save-temps=": Opt.TOO_HARD,
    "--std=": Opt.NONE,
    "--sysroot=": Opt.AFFECTS_CPP,
    "--target=": Opt.TOO_HARD,
    "-O": Opt.OPT_LEVEL,
    "-W": Opt.NONE,
    "-Wa,": Opt.TOO_HARD,
    "-Wl,": Opt.NONE,
    "-Wp,": Opt.TOO_HARD,  # but macro definitions alone: see _preprocessor_args
    "-Xarch_": Opt.TOO_HARD,
    "-d": Opt.TOO_HARD,
    "-f": Opt.NONE,
    "-fcoverage": Opt.TOO_HARD,
    "-fcrash-diagnostics": Opt.TOO_HARD,
    "-fcs-profile": Opt.TOO_HARD,
    "-fdebug-pass": Opt.TOO_HARD,
    "-fdriver-only": Opt.TOO_HARD,
    "-fembed-bitcode": Opt.TOO_HARD,
    "-femit-dwarf-unwind": Opt.TOO_HARD,
    "-fexperimental": Opt.TOO_HARD,
    "-ffat-lto-objects": Opt.TOO_HARD,
    "-fintegrated-cc1": Opt.TOO_HARD,
    "-flto": Opt.TOO_HARD,
    "-fmemory-profile": Opt.TOO_HARD,
    "-fmodule": Opt.TOO_HARD,
    "-fmodules": Opt.TOO_HARD,
    "-fno-builtin-": Opt.FREESTANDING,
    "-fno-integrated-as": Opt.TOO_HARD,
    "-foptimization-record": Opt.TOO_HARD,  # writes a remarks file
    "-fpass-plugin": Opt.TOO_HARD,
    "-fplugin": Opt.TOO_HARD,
    "-fproc-stat-report": Opt.TOO_HARD,
    "-fprofile": Opt.TOO_HARD,
    "-fpseudo-probe": Opt.TOO_HARD,
    "-fsample-profile": Opt.TOO_HARD,
    "-fsanitize": Opt.TOO_HARD,
    "-fsave-optimization-record": Opt.TOO_HARD,
    "-fsplit-dwarf": Opt.TOO_HARD,
    "-fsplit-lto-unit": Opt.TOO_HARD,
    "-fstack-usage": Opt.TOO_HARD,
    "-ftest-coverage": Opt.TOO_HARD,
    "-fthinlto": Opt.TOO_HARD,
    "-ftime-report": Opt.TOO_HARD,
    "-ftime-trace": Opt.TOO_HARD,
    "-fvirtual-function-elimination": Opt.TOO_HARD,
    "-fwhole-program-vtables": Opt.TOO_HARD,
    "-fxray": Opt.TOO_HARD,
    "-g": Opt.NONE,
    "-gen-": Opt.TOO_HARD,  # -gen-reproducer, -gen-cdb-fragment-path: not debug options
    "-gmodules": Opt.TOO_HARD,
    "-gsplit-dwarf": Opt.TOO_HARD,
    "-m": Opt.NONE,
    "-m16": Opt.TOO_HARD,
    "-m32": Opt.TOO_HARD,
    "-mx32": Opt.TOO_HARD,
    "-objcmt": Opt.TOO_HARD,  # not `-o bjcmt…`
    "-object": Opt.TOO_HARD,  # not `-o bject…`
    "-print": Opt.TOO_HARD,
    "-specs": Opt.TOO_HARD,
    "-std=": Opt.NONE,
}

_FAMILY_PREFIXES = sorted(FAMILIES, key=len, reverse=True)
_CONCAT_PREFIXES = sorted((name for name, flags in OPTIONS.items() if flags & Opt.TAKES_CONCAT_ARG),
                          key=len, reverse=True)

# What the driver treats as a C or C++ source, by extension (clang's types::lookupTypeForExtension).
SOURCE_LANGUAGES: dict[str, str] = {
    ".C": "c++",
    ".c": "c",
    ".c++": "c++",
    ".cc": "c++",
    ".cp": "c++",
    ".cpp": "c++",
    ".cxx": "c++",
    ".i": "c",
    ".ii": "c++",
}

# Languages llmcc accepts after `-x`.
LANGUAGES = {"c": "c", "c++": "c++", "cpp-output": "c", "c++-cpp-output": "c++"}

# Optimisation levels and the letters the `levels` setting uses for them.
OPT_LEVELS = {"-O": "1", "-O0": "0", "-O1": "1", "-O2": "2", "-O3": "3", "-O4": "3",
              "-Os": "s", "-Oz": "z", "-Ofast": "fast", "-Og": "g"}


def lookup(arg: str) -> tuple[int, str | None]:
    """Return the facts for `arg` and the value glued to it, if any.

    After the exact spelling, the longest matching prefix wins, whether it is an option that
    takes a glued value or a family.

    Unknown options come back as TOO_HARD, so they reach the real clang untouched.
    """
    flags = OPTIONS.get(arg)
    if flags is not None:
        return flags, None
    glued = next((name for name in _CONCAT_PREFIXES if arg.startswith(name)), "")
    family = next((prefix for prefix in _FAMILY_PREFIXES if arg.startswith(prefix)), "")
    if glued and len(glued) >= len(family):  # `-objcmt-…` is a family member, not `-o bjcmt-…`
        return OPTIONS[glued], arg[len(glued):]
    if family == "-Wp,":
        return _preprocessor_args(arg[len(family):]), None
    if family:
        return FAMILIES[family], None
    return Opt.TOO_HARD, None


def _preprocessor_args(value: str) -> int:
    """`-Wp,A,B`: clang hands A and B to the preprocessor as they are. Macro definitions with
    the name glued on (`-Wp,-D_FORTIFY_SOURCE=2,-UNDEBUG`, distributions' hardening flags)
    mean what `-D…` and `-U…` mean; anything else stays too hard (`-Wp,-MD,FILE` writes a
    depfile, `-Wp,-D,NAME` splits one across two)."""
    macros = value.split(",")
    return Opt.AFFECTS_CPP if all(m[:2] in ("-D", "-U") and len(m) > 2 for m in macros) \
        else Opt.TOO_HARD
