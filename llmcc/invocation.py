"""argv -> what this compiler call is. Pure: no I/O, no subprocesses.

`classify` answers either `Compile` (exactly one C/C++ source compiled to an object at a level
llmcc optimises) or `Passthrough` with the reason the real clang should get the call as it is.
"""

from __future__ import annotations

import os.path

from llmcc.options import LANGUAGES, OPT_LEVELS, SOURCE_LANGUAGES, Opt, lookup


# Plain classes, not namedtuples or typing.NamedTuple: every compiler call imports this module,
# and importing collections costs a passthrough call ~3 ms here (typing ~10 ms).
class Passthrough:
    """The real clang gets the call unchanged, for `reason`."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Passthrough({self.reason!r})"


class Compile:
    """One translation unit compiled to one object file, understood completely."""

    __slots__ = ("codegen", "dep_target_given", "depfile", "depfile_given", "frontend_base",
                 "language", "level", "output", "pic", "source", "system_deps")

    def __init__(self, source: str, language: str, output: str, level: str, pic: bool,
                 depfile: str | None, frontend_base: tuple, codegen: tuple,
                 dep_target_given: bool, depfile_given: bool, system_deps: bool = True) -> None:
        self.source, self.language = source, language
        self.output = output  # as clang will name it: the `-o` value or `<stem>.o` here
        self.level = level  # a letter from OPT_LEVELS: "s", "z", "2", ...
        self.pic = pic  # relocation model, for `opt`
        self.depfile = depfile  # where clang writes the depfile when -MD/-MMD asks, else None
        self.frontend_base = frontend_base  # the user's arguments without `-o <output>`
        self.codegen = codegen  # the user's arguments that still matter once IR exists
        self.dep_target_given = dep_target_given  # -MT/-MQ: clang does not derive the target
        self.depfile_given = depfile_given  # -MF present
        self.system_deps = system_deps  # the depfile lists system headers too (-MD, not -MMD)

    def __repr__(self) -> str:
        return "Compile(" + ", ".join(f"{name}={getattr(self, name)!r}"
                                       for name in self.__slots__) + ")"

    def frontend_args(self, bitcode: str, depfile: str | None = None) -> list[str]:
        """Arguments that make clang stop before LLVM passes and write `bitcode` instead.

        The depfile path and target are spelled out because clang would otherwise derive
        them from `-o`, which now names the bitcode file. A `depfile` given here replaces the
        user's (the last -MF wins), so the real one can be written only with the object: a
        compile that fails later must leave neither behind, as plain clang does.
        """
        args = [*self.frontend_base, "-o", bitcode, "-emit-llvm", "-Xclang", "-disable-llvm-passes"]
        if self.depfile is not None:
            if depfile is not None or not self.depfile_given:
                args += ["-MF", depfile or self.depfile]
            if not self.dep_target_given:
                args += ["-MQ", self.output]
        return args


# clang's diagnostics about the command line itself, which code generation would repeat
QUIET_ABOUT_FLAGS = ("-Wno-unused-command-line-argument", "-Wno-unknown-warning-option",
                     "-Wno-ignored-optimization-argument", "-Wno-option-ignored",
                     "-Wno-deprecated")


def codegen_args(codegen: tuple[str, ...], bitcode: str, obj: str, run_pipeline: bool) -> list[str]:
    """Arguments that compile `bitcode` to `obj` with the user's code generation flags.

    With `run_pipeline` clang runs its own pipeline for the user's level (the baseline);
    without it, clang only generates code for IR a pass list already optimised. The frontend
    already reported, once, what clang says of the flags themselves (GCC's warning and
    optimisation options that it does not know or ignores, such as -Wformat-contains-nul and
    -fgcse, another target's options, deprecated spellings): code generation must not say it
    again. (Code generation from IR has no source, so these groups hide nothing else.)
    """
    args = [*codegen, *QUIET_ABOUT_FLAGS, "-c", "-x", "ir", bitcode, "-o", obj]
    if not run_pipeline:
        args += ["-Xclang", "-disable-llvm-passes"]
    return args


def hosted(codegen: tuple[str, ...]) -> bool:
    """Whether the program may rely on the C library: no -ffreestanding, -fno-builtin[-...] or
    -nostdlib among the code generation arguments (which a recorded TU keeps too)."""
    return not any(arg.startswith("-") and lookup(arg)[0] & Opt.FREESTANDING for arg in codegen)


def _replace_extension(path: str, ext: str) -> str:
    """llvm::sys::path::replace_extension: drop the last `.suffix` of the file name, add `ext`."""
    head, name = os.path.split(path)
    stem, dot, _ = name.rpartition(".")
    return os.path.join(head, (stem if dot else name) + ext)


def _stem(path: str) -> str:
    return _replace_extension(os.path.basename(path), "")


def classify(args: list[str], levels: frozenset[str]) -> Compile | Passthrough:
    """Decide whether llmcc understands this call; `args` excludes the program name."""
    sources: list[tuple[str, str]] = []
    output = None
    language = None
    level = "0"
    compile_only = False
    pic = True  # Debian's clang builds PIE unless told otherwise
    wants_depfile = False
    system_deps = True
    depfile = None
    dep_target_given = False
    frontend: list[str] = []
    codegen: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-":
            return Passthrough("reads the source from standard input")
        if arg.startswith("@"):
            return Passthrough(f"nested response file {arg}")
        if not arg.startswith("-"):
            lang = language or SOURCE_LANGUAGES.get(os.path.splitext(arg)[1])
            if lang is None:
                return Passthrough(f"input {arg!r} is not a C or C++ source")
            sources.append((arg, lang))
            frontend.append(arg)
            i += 1
            continue
        flags, value = lookup(arg)
        if flags & Opt.TOO_HARD:
            return Passthrough(f"option {arg} is not handled")
        taken = 1
        if flags & Opt.TAKES_ARG and value is None:
            if i + 1 >= len(args):
                return Passthrough(f"option {arg} lacks its value")
            value = args[i + 1]
            taken = 2
        tokens = args[i:i + taken]
        i += taken
        if flags & Opt.OUTPUT:
            output = value
            continue
        frontend.extend(tokens)
        if flags & Opt.LANGUAGE:
            if value == "none":
                language = None
            elif value in LANGUAGES:
                language = LANGUAGES[value]
            else:
                return Passthrough(f"language {value!r} is not C or C++")
        elif flags & Opt.COMPILE_ONLY:
            compile_only = True
        elif flags & Opt.OPT_LEVEL:
            if arg not in OPT_LEVELS:
                return Passthrough(f"optimisation level {arg} is not handled")
            level = OPT_LEVELS[arg]
        elif flags & Opt.PIC:
            pic = not arg.startswith("-fno-")
        elif flags & Opt.DEPFILE:
            if arg in ("-MD", "-MMD"):
                wants_depfile = True
                system_deps = system_deps and arg == "-MD"  # any -MMD drops them, as in clang
            elif arg.startswith("-MF"):
                depfile = value
            elif arg.startswith(("-MT", "-MQ")):
                dep_target_given = True
        if not flags & (Opt.AFFECTS_CPP | Opt.LANGUAGE | Opt.COMPILE_ONLY):
            codegen.extend(tokens)

    if not compile_only:
        return Passthrough("not a compile to an object (-c)")
    if len(sources) != 1:
        return Passthrough(f"{len(sources)} source files")
    if output == "-":
        return Passthrough("writes the object to standard output")
    if level not in levels:
        return Passthrough(f"optimisation level -O{level} is not optimised by llmcc")
    source, lang = sources[0]
    if output is None:
        output = _stem(source) + ".o"
    depfile_given = depfile is not None
    if wants_depfile and depfile is None:
        depfile = _replace_extension(output, ".d")  # clang's rule, with or without -o
    return Compile(
        source=source, language=lang, output=output, level=level, pic=pic,
        depfile=depfile if wants_depfile else None,
        frontend_base=tuple(frontend), codegen=tuple(codegen),
        dep_target_given=dep_target_given, depfile_given=depfile_given,
        system_deps=system_deps,
    )


def expand_response_files(args: list[str], read_text) -> list[str]:
    """Replace each `@file` by its arguments, split the way GNU tools quote them.

    `read_text(path)` does the reading, so this stays free of I/O. A file that cannot be read
    stays as it is (clang then treats `@file` as an input and says what is wrong).
    """
    expanded: list[str] = []
    for arg in args:
        if arg.startswith("@") and len(arg) > 1:
            try:
                text = read_text(arg[1:])
            except OSError:
                expanded.append(arg)
                continue
            expanded.extend(split_gnu(text.removeprefix("\ufeff")))
        else:
            expanded.append(arg)
    return expanded


def split_gnu(text: str) -> list[str]:
    """Words of a response file exactly as clang reads them (LLVM's TokenizeGNUCommandLine).

    Not shlex: a backslash escapes the next character inside single and double quotes too, a
    quote left open runs to the end of the file, and empty words are dropped.
    """
    words: list[str] = []
    word: list[str] = []
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char == "\\" and i + 1 < end:
            word.append(text[i + 1])
            i += 2
        elif char in "'\"":
            i += 1
            while i < end and text[i] != char:
                if text[i] == "\\" and i + 1 < end:
                    i += 1
                word.append(text[i])
                i += 1
            i += 1  # past the closing quote
        elif char in " \t\r\n":
            if word:
                words.append("".join(word))
                word = []
            i += 1
        else:
            word.append(char)
            i += 1
    if word:
        words.append("".join(word))
    return words
