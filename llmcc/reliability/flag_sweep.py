"""The flag sweep: every option llmcc intercepts keeps its effect in every candidate's object.

Some options act through clang's own pipeline, which a candidate pass list replaces:
`-finstrument-functions` sets an attribute that a pass of clang's pipeline turns into calls, so
a list without that pass dropped the calls. This sweep finds such options by what they do, not
by name. For each spelling of each option clang lists (`clang --autocomplete=-`, with the
values it lists for `-opt=`) that llmcc would intercept at -Oz, probe TUs are compiled by plain
clang with and without it. What the option adds is its effect: undefined symbols
(instrumentation calls such as `__cyg_profile_*`, `mcount`, `__sanitizer_cov*`), sections
(`__patchable_function_entries`, `.stack_sizes`, ...) and function attributes in clang's
optimised IR (not the frontend's: clang's pipeline consumes some, as it does
`-finstrument-functions`'s). Then clang's pipeline on llmcc's IR (the baseline) and each of a
set of pass lists, built by `optimize.Evaluator` exactly as the wrapper builds them, must keep
all of it: the symbols
and sections in the object, the attributes on every function of the optimised IR.

    python -m llmcc.reliability.flag_sweep [--jobs 2] [--json FILE]

Options that take a separate argument are not probed: llmcc's table knows them all
(preprocessor, depfile, output, language and link options).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from llmcc.invocation import Compile, classify
from llmcc.objfile import read_object, section_names
from llmcc.optimize import BaselineUnusable, Evaluator, opt_command
from llmcc.passes import OZ_PIPELINE, PassList, validate
from llmcc.toolchain import Tools, check_tools, default_clang

PROBE_C = r"""#include <stdarg.h>
#include <string.h>
extern int ext(int);
extern void report(const char *, ...);
static __thread int tls_counter;
int table[16] = {1, 2, 3};
const char *names[] = {"zero", "one", "two", "three"};
static int helper(int x) { return ext(x) * 3 + 1; }
int dispatch(int op, int x) {
    switch (op) {
    case 0: return x + 1; case 1: return x * 7; case 2: return x - 3;
    case 3: return x ^ 5; case 4: return x << 2; case 5: return helper(x);
    default: return -1;
    }
}
int sum(const int *p, int n) {
    int s = 0;
    for (int i = 0; i < n; i++) s += p[i] * table[i & 15];
    return s;
}
int buffer(const char *s) {
    char tmp[64];
    strncpy(tmp, s, sizeof tmp - 1);
    tmp[63] = 0;
    return ext((int)strlen(tmp)) + tls_counter++;
}
double power(double x, int n) { double r = 1; while (n-- > 0) r *= x; return r; }
void warn_if(int bad, const char *what) {
    if (__builtin_expect(bad, 0)) {
        report("bad %s %d\n", what, bad);
        report("%s", names[bad & 3]);
    }
}
int variadic(int n, ...) {
    va_list ap;
    va_start(ap, n);
    int s = 0;
    while (n--) s += va_arg(ap, int);
    va_end(ap);
    return s;
}
"""

PROBE_CC = r"""extern int ext(int);
struct Base { virtual ~Base() {} virtual int f(int x) { return x + 1; } };
struct Derived : Base { int f(int x) override { return ext(x) * 2; } };
template <class T> T twice(T v) { return v + v; }
int use(Base &b, int x) {
    static int calls = ext(0);
    calls++;
    try { if (x < 0) throw x; return b.f(twice(x)) + calls; } catch (int e) { return e; }
}
Base *make(int k) { return k ? static_cast<Base *>(new Derived) : new Base; }
"""

PROBES = {"probe.c": PROBE_C, "probe.cc": PROBE_CC}
BASE_ARGS = ("-Oz", "-c")

# Lists every effect must survive: nothing but what clang always runs, LLVM's -Oz pipeline, and
# lists of the passes that create, clone, merge, outline or delete functions (none that llmcc
# never runs: the evaluator would refuse the whole list, and its other passes go unchecked).
LISTS: tuple[PassList, ...] = tuple(validate(names) for names in (
    ("always-inline",),
    OZ_PIPELINE,
    ("inline", "argpromotion", "deadargelim", "ipsccp", "globalopt", "function-attrs"),
    ("sroa<modify-cfg>", "simplifycfg", "hotcoldsplit", "mergefunc", "attributor-light",
     "instcombine<no-verify-fixpoint>", "called-value-propagation"),
))

# Values tried for `-opt=` options whose values clang does not list.
FALLBACK_VALUES = ("1", "4,2")
# Section names that carry a symbol's name after a fixed prefix (-ffunction-sections, ...).
_PER_SYMBOL = re.compile(r"^(\.(?:text|data|bss|rodata|tdata|tbss|ldata|lbss|lrodata|"
                         r"data\.rel\.ro|data\.rel|gcc_except_table)(?:\.unlikely|\.hot|"
                         r"\.startup|\.exit|\.split)?)\..+$")
_CODE_DEPENDENT = frozenset({".debug_loc", ".debug_loclists", ".debug_ranges",
                             ".debug_rnglists", ".note.GNU-no-split-stack"})
_DEFINE = re.compile(r"^define [^@]*@(\"[^\"]+\"|[\w.$]+)\(.*\)[^{#]*((?:#\d+\s*)*)\{",
                     re.MULTILINE)
_GROUP = re.compile(r"^attributes (#\d+) = \{ (.*) \}$", re.MULTILINE)
_ATTRIBUTE = re.compile(r'"[^"]*"(?:="[^"]*")?|[\w.]+(?:\([^)]*\))?')


@dataclass
class Probe:
    """What one spelling did on one probe TU."""

    flag: str
    probe: str
    status: str  # rejected-by-clang | no-effect | kept | lost
    effect: list[str] = field(default_factory=list)
    lost: list[dict] = field(default_factory=list)  # {"list": ..., "missing": [...]}


def object_features(blob: bytes) -> set[str]:
    """Undefined symbols and section names (per-symbol suffixes folded), as one set.

    Left out: relocation sections (they follow the others) and the sections that exist only when
    the code needs them, which differently optimised code may not: debug location and range
    lists (variables held in registers, functions in pieces), and `.note.GNU-no-split-stack`
    (some -fsplit-stack function is a leaf small enough to need no split-stack prologue).
    """
    info = read_object(blob)
    sections = {_PER_SYMBOL.sub(r"\1.*", name) for name in section_names(blob)
                if not name.startswith(".rela") and name not in _CODE_DEPENDENT}
    return {f"undefined {name}" for name in info.undefined} | {f"section {name}"
                                                               for name in sections}


def function_attributes(ir_text: str) -> dict[str, set[str]]:
    """Attributes of every function the IR defines, from its attribute groups."""
    groups = {number: set(_ATTRIBUTE.findall(body)) for number, body in _GROUP.findall(ir_text)}
    return {name: set().union(*(groups.get(ref, set()) for ref in refs.split()))
            for name, refs in _DEFINE.findall(ir_text)}


def common_attributes(ir_text: str) -> set[str]:
    """Attributes that every defined function carries."""
    per_function = list(function_attributes(ir_text).values())
    return set.intersection(*per_function) if per_function else set()


def effect_of(flag_features: set[str], plain_features: set[str], flag_attrs: set[str],
              plain_attrs: set[str]) -> set[str]:
    """What the flag adds: object features and common function attributes it brings."""
    return (flag_features - plain_features) | {f"attribute {a}" for a in flag_attrs - plain_attrs}


def missing_from(effect: set[str], features: set[str], ir_text: str | None) -> list[str]:
    """The parts of `effect` a candidate lost: in its object, or on any function of its IR."""
    lost = [item for item in effect if not item.startswith("attribute ") and item not in features]
    wanted = {item[len("attribute "):] for item in effect if item.startswith("attribute ")}
    if wanted and ir_text is not None:
        for name, attrs in function_attributes(ir_text).items():
            lost += [f"attribute {a} (on {name})" for a in sorted(wanted - attrs)]
    return sorted(lost)


class Sweep:
    """Runs the probes in one private directory; `check(flag, probe)` is thread-safe."""

    def __init__(self, tools: Tools, workdir: str, timeout: float = 60.0) -> None:
        self.tools, self.workdir, self.timeout = tools, workdir, timeout
        self.llvm_dis = os.path.join(os.path.dirname(tools.opt), "llvm-dis")
        for name, text in PROBES.items():
            with open(os.path.join(workdir, name), "w") as handle:
                handle.write(text)
        self._plain = {name: self._plain_compile((), name) for name in PROBES}

    def _run(self, cmd: list[str], cwd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=self.timeout,
                              check=False)

    def _scratch(self) -> str:
        return tempfile.mkdtemp(dir=self.workdir)

    def _plain_compile(self, flags: tuple[str, ...], probe: str,
                       base_ir: bytes | None = None):
        """(object features, common attributes, optimised IR) or None if clang refuses.

        A warning option (`-W...`) whose optimised IR equals `base_ir` changed no code: its
        object is not built, and the features come back empty.
        """
        scratch = self._scratch()
        source = os.path.join(self.workdir, probe)
        ir = self._run([self.tools.clang, *BASE_ARGS, *flags, source, "-emit-llvm", "-S",
                        "-o", "-"], scratch)
        if ir.returncode != 0 or b"argument unused" in ir.stderr:
            return None
        if flags and flags[0].startswith("-W") and ir.stdout == base_ir:
            return set(), set(), ir.stdout
        done = self._run([self.tools.clang, *BASE_ARGS, *flags, source, "-o", "p.o"], scratch)
        if done.returncode != 0:
            return None
        with open(os.path.join(scratch, "p.o"), "rb") as handle:
            features = object_features(handle.read())
        return features, common_attributes(ir.stdout.decode(errors="replace")), ir.stdout

    def check(self, flag: str, probe: str) -> Probe:
        base_features, base_attrs, base_ir = self._plain[probe]
        plain = self._plain_compile((flag,), probe, base_ir)
        if plain is None:
            return Probe(flag, probe, "rejected-by-clang")
        features, attrs, ir = plain
        if ir == base_ir and not features:
            return Probe(flag, probe, "no-effect")
        effect = effect_of(features, base_features, attrs, base_attrs)
        if not effect:
            return Probe(flag, probe, "no-effect")
        lost = self._candidates_losing(flag, probe, effect)
        return Probe(flag, probe, "lost" if lost else "kept", sorted(effect), lost)

    def _candidates_losing(self, flag: str, probe: str, effect: set[str]) -> list[dict]:
        """Build the probe exactly as the wrapper would; report each list that lost something."""
        inv = classify([*BASE_ARGS, flag, os.path.join(self.workdir, probe)], frozenset("sz"))
        assert isinstance(inv, Compile), inv
        scratch = self._scratch()
        bitcode = os.path.join(scratch, "tu.bc")
        done = self._run([self.tools.clang, *inv.frontend_args(bitcode)], scratch)
        if done.returncode != 0:
            return [{"list": "frontend", "missing": [done.stderr.decode(errors="replace")[:200]]}]
        evaluator = Evaluator(inv.codegen, inv.pic, self.tools, bitcode, scratch, self.timeout,
                              stop_after_failure=False, language=inv.language)
        lost = []
        try:
            baseline = evaluator.baseline()
        except BaselineUnusable:
            return []  # the wrapper hands this compile to plain clang (e.g. a -W... diagnostic)
        missing = missing_from(effect, object_features(baseline.object), None)
        if missing:
            lost.append({"list": "clang's pipeline", "missing": missing})
        for passes in LISTS:
            result = evaluator.candidate(passes)
            if result.error is not None:
                if result.tool_failure:
                    lost.append({"list": " ".join(passes), "missing": [result.error]})
                continue  # refused by the symbol rule: never reaches a user
            optimised = os.path.join(scratch, "candidate.ll")
            self._run([*opt_command(self.tools, inv.pic, passes, bitcode, optimised), "-S"],
                      scratch)
            with open(optimised) as handle:
                ir_text = handle.read()
            missing = missing_from(effect, object_features(result.object), ir_text)
            if missing:
                lost.append({"list": " ".join(passes), "missing": missing})
        return lost


@functools.cache
def _autocomplete(clang: str, prefix: str) -> tuple[str, ...]:
    done = subprocess.run([clang, f"--autocomplete={prefix}"], capture_output=True, text=True,
                          check=False)
    return tuple(line.split("\t")[0] for line in done.stdout.splitlines() if line.strip())


def intercepted_spellings(clang: str) -> list[str]:
    """Every spelling from clang's option list that llmcc would intercept in a -Oz compile."""
    spellings = []
    for option in _autocomplete(clang, "-"):
        values = ([option + v for v in _autocomplete(clang, option) or FALLBACK_VALUES]
                  if option.endswith("=") else [option])
        for spelling in values:
            if isinstance(classify([*BASE_ARGS, "probe.c", spelling], frozenset("sz")), Compile):
                spellings.append(spelling)
    return sorted(set(spellings))


def probes_for(flag: str) -> list[str]:
    """The C probe for every option; the C++ probe as well for `-f` options (language ones)."""
    return ["probe.c", "probe.cc"] if flag.startswith("-f") else ["probe.c"]


def sweep(tools: Tools, jobs: int = 2, flags: list[str] | None = None,
          progress=None) -> list[Probe]:
    """Check every intercepted spelling (or `flags`) on its probes; one Probe per pair."""
    flags = intercepted_spellings(tools.clang) if flags is None else flags
    pairs = [(flag, probe) for flag in flags for probe in probes_for(flag)]
    with tempfile.TemporaryDirectory(prefix="llmcc-sweep-") as workdir:
        runner = Sweep(tools, workdir)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = []
            for number, result in enumerate(pool.map(lambda p: runner.check(*p), pairs), 1):
                results.append(result)
                if progress:
                    progress(number, len(pairs), result)
    return results


def summary(results: list[Probe]) -> dict:
    """Counts per status, and the distinct flags checked (accepted by clang on some probe)."""
    statuses = Counter(r.status for r in results)
    accepted = {r.flag for r in results if r.status != "rejected-by-clang"}
    with_effect = {r.flag for r in results if r.status in ("kept", "lost")}
    return {"spellings": len({r.flag for r in results}), "checked": len(accepted),
            "with_effect": len(with_effect), "statuses": dict(statuses),
            "lost": [{"flag": r.flag, "probe": r.probe, "lost": r.lost} for r in results
                     if r.status == "lost"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", help="write every probe's result here")
    parser.add_argument("flags", nargs="*", help="only these spellings (default: all)")
    args = parser.parse_args(argv)
    tools = check_tools(default_clang("", os.environ.get("PATH", ""), frozenset()), "")

    def progress(number: int, total: int, result: Probe) -> None:
        if result.status == "lost" or number % 200 == 0 or number == total:
            sys.stderr.write(f"[{number}/{total}] {result.flag} {result.probe}: {result.status}\n")

    results = sweep(tools, args.jobs, args.flags or None, progress)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([r.__dict__ for r in results], handle, indent=1)
    report = summary(results)
    print(json.dumps({k: v for k, v in report.items() if k != "lost"}, indent=1))
    for item in report["lost"]:
        print(f"LOST {item['flag']} ({item['probe']}): {item['lost']}")
    effects = sorted({(r.flag, e) for r in results if r.status == "kept" for e in r.effect})
    print(f"{report['with_effect']} flags with a visible effect; {len(effects)} (flag, effect) "
          "pairs, every one kept by every list" if not report["lost"] else "")
    return 1 if report["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
