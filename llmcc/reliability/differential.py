"""Differential testing: does any pass list change what a program computes?

For each seeded csmith program: a reference built by plain `clang -O0` and run; the frontend IR
at -Oz obtained as the wrapper obtains it (`invocation.classify(...).frontend_args`); then
clang's own pipeline (the baseline) and candidate lists, each built by `optimize.Evaluator`
exactly as the wrapper builds them, symbol check included, so a list the wrapper would reject
is counted as rejected and never run. Every object is linked and run and its output (csmith's
checksum) compared with the reference's. A candidate that disagrees while the baseline agrees
is a miscompile by that list: its program, list and commands are kept under
DIR/reproducers/<id>/ and the list is minimised (passes dropped while the failure persists).

    python -m llmcc.reliability.differential --programs 100 --lists 8 --out DIR [--jobs 2]
    python -m llmcc.reliability.differential --out DIR --report

Each finished program is one line of DIR/results.jsonl, so a run that stops resumes where it
left off. Everything is seeded, so a rerun draws the same programs and lists; the advisor's
lists are read at run time and their identity is recorded with each program. `--advisor
popular` (the default) puts the popular lists first; `--advisor forest` every list the shipped
forest chooses from (`--lists 101` tries all of them on each program), the default advisor's
whole repertoire; `--advisor search` runs the search advisor on each program, as a compile with
`LLMCC_ADVISOR=search` runs it (its budget from the settings, LLMCC_SEARCH_BUDGET), and tests
a list for each of the smallest distinct objects it built, its answer first: a pass that
wrongly drops code makes objects smaller, so a search is where such a pass is most likely to be
kept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from functools import partial

from llmcc.interface import former_refusal
from llmcc.invocation import Compile, classify, codegen_args
from llmcc.objfile import read_object
from llmcc.optimize import BaselineUnusable, Evaluator, opt_command
from llmcc.passes import PassList, random_list, to_pipeline, to_text, validate
from llmcc.search import mutate
from llmcc.toolchain import StepFailed, ToolchainError, Tools, check_tools, default_clang, run

CSMITH = "csmith"
CSMITH_INCLUDE = "/usr/include/csmith"
# A pointer to a packed field may be misaligned, undefined behaviour csmith does not rule out.
# With argv, main() calls strcmp, which clang's -Oz pipeline removes and most lists keep: the
# wrapper rejects an object needing a symbol the baseline does not, so nearly every list would
# be rejected untested.
CSMITH_OPTIONS = ("--no-packed-struct", "--no-argc")
CSMITH_TIMEOUT = 30.0  # csmith occasionally wanders off; such a seed is skipped
MAX_PROGRAM_BYTES = 400_000  # csmith's output rarely exceeds this; larger ones are skipped
STEP_TIMEOUT = 30.0  # opt, codegen and link: the wrapper's default `timeout` setting
FLAGS = ("-w", f"-I{CSMITH_INCLUDE}")  # the reference and the optimised compile alike

RESULTS = "results.jsonl"
RUN_FILE = "run.json"
REPRODUCERS = "reproducers"
BASELINE_DIFFERS_DIR = "baseline-differs"

# Where a candidate list came from: an advisor's lists (the advisor's name), or drawn.
POPULAR, FOREST, SEARCH, RANDOM, MUTATED = "popular", "forest", "search", "random", "mutated"
ADVISORS = (POPULAR, FOREST, SEARCH)
ORIGINS = (*ADVISORS, RANDOM, MUTATED)

# What happened to one list on one program.
MATCH = "match"
REJECTED = "rejected"  # the wrapper would not use it: opt or codegen failed, symbols differ
MISMATCH = "mismatch"  # ran to the end but printed something else
CRASH = "crash"  # died of a signal or exited with another status
TIMEOUT = "timeout"  # still running after the limit, and again after a longer one
LINK_ERROR = "link-error"  # passed the symbol check, yet does not link
FAILURES = (MISMATCH, CRASH, TIMEOUT, LINK_ERROR)
OUTCOMES = (MATCH, REJECTED, *FAILURES)

# What happened to one program.
TESTED = "tested"
SKIPPED = "skipped"  # csmith, the reference, the frontend or the baseline was unusable
BASELINE_DIFFERS = "baseline-differs"  # clang's own pipeline disagrees with -O0: not a list's doing

# A candidate gets this many times the reference's limit (optimised code is rarely slower than
# -O0, but the machine may be busy), and a time-out is confirmed with a longer limit still.
CANDIDATE_SLACK = 2.0
CONFIRM_SLACK = 3.0
MINIMISE_BUDGET = 120  # candidate evaluations spent minimising one failing list


class CampaignError(Exception):
    """The run cannot start: tools missing, or DIR holds a run with other settings."""


class ProgramUnusable(Exception):
    """This program cannot test anything: csmith, the reference, frontend or baseline failed."""


@dataclass(frozen=True)
class Options:
    """What determines the programs and lists drawn: recorded in DIR/run.json."""

    seed: int = 0
    lists: int = 8
    level: str = "z"
    advisor: str = POPULAR  # whose lists come first (ADVISORS)
    run_timeout: float = 5.0
    csmith_options: tuple[str, ...] = CSMITH_OPTIONS


@dataclass(frozen=True)
class Execution:
    """One run of a built program: exit status (None: past its limit) and standard output."""

    returncode: int | None
    stdout: bytes
    seconds: float


def execute(exe: str, timeout: float) -> Execution:
    start = time.perf_counter()
    try:
        done = subprocess.run([exe], capture_output=True, stdin=subprocess.DEVNULL,
                              cwd=os.path.dirname(exe), timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        return Execution(None, exc.stdout or b"", timeout)
    return Execution(done.returncode, done.stdout, time.perf_counter() - start)


def verdict(reference: Execution, got: Execution) -> str:
    """MATCH, or the failure `got` shows against the reference run."""
    if got.returncode is None:
        return TIMEOUT
    if got.returncode != reference.returncode:
        return CRASH
    if got.stdout != reference.stdout:
        return MISMATCH
    return MATCH


def csmith_seed(seed: int, index: int) -> int:
    return random.Random(f"{seed}:{index}").getrandbits(31)


def candidate_lists(advised: tuple[PassList, ...], count: int, rng: random.Random,
                    advisor: str = POPULAR) -> list[tuple[str, PassList]]:
    """`count` distinct (origin, list): the advisor's lists first, then random lists and
    mutations (one to three edits) of lists already chosen, alternately."""
    chosen = [(advisor, validate(passes)) for passes in advised[:count]]
    seen = {passes for _, passes in chosen}
    want_random = True
    for _ in range(100 * count):
        if len(chosen) >= count:
            break
        if want_random or not chosen:
            origin, passes = RANDOM, random_list(rng)
        else:
            origin, passes = MUTATED, rng.choice(chosen)[1]
            for _ in range(rng.randint(1, 3)):
                passes = mutate(passes, rng)
        if passes not in seen:
            seen.add(passes)
            chosen.append((origin, passes))
            want_random = not want_random
    return chosen


def searched_lists(evaluator: Evaluator, seeds: tuple[PassList, ...], count: int,
                   seed: str) -> list[tuple[str, PassList]]:
    """A list for each of the `count` smallest distinct objects the search advisor (seeded
    with `seeds`, the popular lists) builds on the evaluator's TU, in the order a compile would
    prefer them: its answer first. (Many lists build the same object; one of them tests it.)"""
    from llmcc.advisor.popular import PopularAdvisor
    from llmcc.advisor.search import SearchAdvisor
    from llmcc.config import load

    search = SearchAdvisor(load(), PopularAdvisor(seeds, POPULAR))
    measured = sorted((r for r in search.tune(evaluator, seed)
                       if r.passes is not None and r.size is not None), key=lambda r: r.size)
    objects: set[bytes] = set()
    chosen = []
    for result in measured:
        digest = hashlib.blake2b(result.object, digest_size=20).digest()
        if digest not in objects:
            objects.add(digest)
            chosen.append((SEARCH, result.passes))
    return chosen[:count]


def minimise_failure(passes: PassList, fails: Callable[[PassList], bool],
                     budget: int = MINIMISE_BUDGET) -> PassList:
    """Drop passes one at a time (last first) while `fails` holds, until none can go.

    always-inline stays first, as in every list the wrapper runs.
    """
    current = validate(passes)
    changed = True
    while changed and budget > 0:
        changed = False
        i = len(current) - 1
        while i >= 1 and budget > 0:
            shorter = current[:i] + current[i + 1:]
            budget -= 1
            if fails(shorter):
                current, changed = shorter, True
            i -= 1
    return current


# The commands, as functions of the paths, so the harness and a reproducer's script agree.

def reference_command(clang: str, source: str, exe: str) -> list[str]:
    return [clang, "-O0", *FLAGS, source, "-o", exe]


def optimised_compile(source: str, level: str) -> Compile:
    """The wrapper's view of `clang -O<level> -c source`: what it compiles and how."""
    inv = classify([f"-O{level}", *FLAGS, "-c", source, "-o", source + ".o"],
                   frozenset(level))
    assert isinstance(inv, Compile), inv
    return inv


def link_command(clang: str, obj: str, exe: str) -> list[str]:
    return [clang, obj, "-o", exe]


def script(tools: Tools, options: Options, passes: PassList | None, seed: int) -> str:
    """A shell script that rebuilds the reference and the candidate (None: clang's own
    pipeline) from program.c beside it, runs both, and fails if they disagree."""
    inv = optimised_compile("program.c", options.level)
    limit = f"{CANDIDATE_SLACK * options.run_timeout:g}"
    if passes is None:
        build = [[tools.clang, *codegen_args(inv.codegen, "program.bc", "candidate.o", True)]]
    else:
        build = [opt_command(tools, inv.pic, passes, "program.bc", "candidate.bc"),
                 [tools.clang, *codegen_args(inv.codegen, "candidate.bc", "candidate.o",
                                             False)]]
    lines = [
        "#!/bin/sh",
        "# llmcc differential test: rebuild the reference (clang -O0) and the candidate",
        f"# ({'clang pipeline' if passes is None else to_text(passes)}) from program.c,",
        "# run both, exit 1 if they disagree. program.c came from:",
        "#   " + shlex.join([CSMITH, "--seed", str(seed), *options.csmith_options,
                            "-o", "program.c"]),
        "set -e",
        'cd "$(dirname "$0")"',
        shlex.join(reference_command(tools.clang, "program.c", "./reference")),
        shlex.join([tools.clang, *inv.frontend_args("program.bc")]),
        *(shlex.join(cmd) for cmd in build),
        shlex.join(link_command(tools.clang, "candidate.o", "./candidate")),
        "ref=0; timeout " + limit + " ./reference > reference.rerun.out || ref=$?",
        "cand=0; timeout " + limit + " ./candidate > candidate.rerun.out || cand=$?",
        'echo "reference exit $ref, candidate exit $cand (124: timed out)"',
        'cmp reference.rerun.out candidate.rerun.out && [ "$ref" = "$cand" ]',
        "",
    ]
    return "\n".join(lines)


class Trial:
    """Links and runs the objects built for one program, each compared with the reference.

    Different lists often yield the same object: each distinct object is run once.
    """

    def __init__(self, tools: Tools, workdir: str, reference: Execution, limit: float) -> None:
        self.tools, self.workdir, self.reference, self.limit = tools, workdir, reference, limit
        self._seen: dict[str, tuple[str, Execution | None, str | None]] = {}

    def check(self, obj: bytes) -> tuple[str, Execution | None, str | None]:
        """(outcome, the run or None if it did not link, what went wrong)."""
        digest = hashlib.blake2b(obj, digest_size=20).hexdigest()
        if digest not in self._seen:
            self._seen[digest] = self._check(obj)
        return self._seen[digest]

    def _check(self, obj: bytes) -> tuple[str, Execution | None, str | None]:
        path, exe = os.path.join(self.workdir, "trial.o"), os.path.join(self.workdir, "trial")
        with open(path, "wb") as handle:
            handle.write(obj)
        try:
            code, _, err = run(link_command(self.tools.clang, path, exe), STEP_TIMEOUT)
        except StepFailed as exc:
            return LINK_ERROR, None, str(exc)
        if code != 0:
            return LINK_ERROR, None, err.decode(errors="replace")[:300]
        got = execute(exe, self.limit)
        if got.returncode is None:  # a busy machine can be slow: confirm with a longer limit
            got = execute(exe, CONFIRM_SLACK * self.limit)
        outcome = verdict(self.reference, got)
        detail = None
        if outcome == TIMEOUT:
            detail = f"ran past {CONFIRM_SLACK * self.limit:g}s"
        elif outcome == CRASH:
            detail = f"exit status {got.returncode}, reference {self.reference.returncode}"
        return outcome, got, detail


def generate(seed: int, options: Options, source: str) -> None:
    """Write csmith's program for `seed`; csmith also leaves platform.info in its directory."""
    try:
        done = subprocess.run([CSMITH, "--seed", str(seed), *options.csmith_options,
                               "-o", source], capture_output=True, stdin=subprocess.DEVNULL,
                              cwd=os.path.dirname(source), timeout=CSMITH_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise ProgramUnusable(f"csmith ran past {CSMITH_TIMEOUT:g}s") from None
    if done.returncode != 0:
        raise ProgramUnusable(f"csmith exited {done.returncode}: "
                              f"{done.stderr.decode(errors='replace')[:200]}")


def _build(cmd: list[str], what: str) -> None:
    try:
        code, out, err = run(cmd, STEP_TIMEOUT)
    except StepFailed as exc:
        raise ProgramUnusable(f"{what}: {exc}") from None
    if code != 0 or out:
        raise ProgramUnusable(f"{what} exited {code}: {err.decode(errors='replace')[:200]}")


def _keep(directory: str, workdir: str, script_text: dict[str, str], files: dict[str, bytes],
          facts: dict) -> None:
    """Write one reproducer: the program, its IR, scripts, outputs and what was seen."""
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    for name in ("program.c", "program.bc"):
        shutil.copyfile(os.path.join(workdir, name), os.path.join(directory, name))
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as handle:
            handle.write(data)
    for name, text in script_text.items():
        path = os.path.join(directory, name)
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, 0o755)
    with open(os.path.join(directory, "outcome.json"), "w") as handle:
        json.dump(facts, handle, indent=1)
        handle.write("\n")


def _test_program(record: dict, workdir: str, out: str, options: Options, tools: Tools,
                  advised: tuple[PassList, ...], evaluator_class: type[Evaluator]) -> None:
    index, seed = record["program"], record["csmith_seed"]
    source = os.path.join(workdir, "program.c")
    generate(seed, options, source)
    record["bytes"] = os.path.getsize(source)
    if record["bytes"] > MAX_PROGRAM_BYTES:
        raise ProgramUnusable(f"program is {record['bytes']} bytes")

    reference_exe = os.path.join(workdir, "reference")
    _build(reference_command(tools.clang, source, reference_exe), "reference build")
    reference = execute(reference_exe, options.run_timeout)
    if reference.returncode is None:
        raise ProgramUnusable(f"reference ran past {options.run_timeout:g}s")
    if reference.returncode != 0:
        raise ProgramUnusable(f"reference exited {reference.returncode}")
    record["reference"] = reference.stdout.decode(errors="replace").strip()[:200]
    record["reference_seconds"] = round(reference.seconds, 3)

    inv = optimised_compile(source, options.level)
    bitcode = os.path.join(workdir, "program.bc")
    _build([tools.clang, *inv.frontend_args(bitcode)], "frontend")
    evaluator = evaluator_class(inv.codegen, inv.pic, tools, bitcode, workdir, STEP_TIMEOUT,
                                stop_after_failure=False)
    try:
        baseline = evaluator.baseline()
    except BaselineUnusable as exc:
        raise ProgramUnusable(f"baseline: {exc}") from None
    trial = Trial(tools, workdir, reference, CANDIDATE_SLACK * options.run_timeout)

    def keep(directory: str, passes: PassList | None, minimal: PassList | None,
             outcome: str, got: Execution | None, detail: str | None) -> None:
        scripts = {"commands.sh": script(tools, options, passes, seed)}
        if minimal is not None and minimal != passes:
            scripts["minimal.sh"] = script(tools, options, minimal, seed)
        files = {"reference.out": reference.stdout, "candidate.out": got.stdout if got else b""}
        if passes is not None:
            files["passes.txt"] = (to_text(passes) + "\n").encode()
            files["minimal.txt"] = (to_text(minimal) + "\n").encode()
        _keep(directory, workdir, scripts, files, {
            "outcome": outcome, "detail": detail, "csmith_seed": seed,
            "passes": None if passes is None else to_text(passes),
            "minimal": None if minimal is None else to_text(minimal),
            "pipeline": None if minimal is None else to_pipeline(minimal),
            "reference_exit": reference.returncode,
            "candidate_exit": got.returncode if got else None,
            "options": asdict(options), "tools": tools.as_dict()})

    outcome, got, detail = trial.check(baseline.object)
    record["baseline"] = {"size": baseline.size, "outcome": outcome}
    ident = f"s{options.seed}-p{index:05d}"
    if outcome != MATCH:
        record["status"] = BASELINE_DIFFERS
        record["reason"] = detail or outcome
        keep(os.path.join(out, BASELINE_DIFFERS_DIR, ident), None, None, outcome, got, detail)
        return
    record["status"] = TESTED

    def fails_alike(failure: str, passes: PassList) -> bool:
        result = evaluator.candidate(passes)
        return result.error is None and trial.check(result.object)[0] == failure

    rng = random.Random(f"{options.seed}:{index}:lists")
    lists = searched_lists(evaluator, advised, options.lists, f"{options.seed}:{index}") \
        if options.advisor == SEARCH else \
        candidate_lists(advised, options.lists, rng, options.advisor)
    objects: set[bytes] = set()  # distinct candidate objects: many lists build the same one
    for number, (origin, passes) in enumerate(lists):
        result = evaluator.candidate(passes)
        entry = {"origin": origin, "passes": to_text(passes), "size": result.size}
        if result.error is not None:
            entry.update(outcome=REJECTED, error=result.error[:300])
        else:
            objects.add(hashlib.blake2b(result.object, digest_size=20).digest())
            if former_refusal(read_object(result.object), evaluator.baseline_info):
                entry["former_rule_refused"] = True  # run only since the symbol tables
            outcome, got, detail = trial.check(result.object)
            entry["outcome"] = outcome
            if outcome in FAILURES:
                minimal = minimise_failure(passes, partial(fails_alike, outcome))
                name = f"{ident}-l{number:02d}"
                entry.update(error=detail, reproducer=name, minimal=to_text(minimal))
                keep(os.path.join(out, REPRODUCERS, name), passes, minimal, outcome, got, detail)
        record["lists"].append(entry)
    record["objects_run"] = len(objects)


def check_program(index: int, out: str, options: Options, tools: Tools,
                  advised: tuple[PassList, ...], advised_identity: str = "",
                  evaluator_class: type[Evaluator] = Evaluator) -> dict:
    """Test program `index` against the baseline and the lists; returns its results line.

    `evaluator_class` lets a test inject a deliberately wrong evaluator.
    """
    started = time.perf_counter()
    record = {"seed": options.seed, "program": index,
              "csmith_seed": csmith_seed(options.seed, index), "status": SKIPPED,
              "reason": None, "advised": advised_identity, "lists": []}
    with tempfile.TemporaryDirectory(prefix="llmcc-differential-") as workdir:
        try:
            _test_program(record, workdir, out, options, tools, advised, evaluator_class)
        except ProgramUnusable as exc:
            record["reason"] = str(exc)
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


def read_records(out: str) -> list[dict]:
    """The results so far; a line cut short by an interrupted write is ignored."""
    records = []
    try:
        with open(os.path.join(out, RESULTS)) as handle:
            for line in handle:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return records


def _check_run_file(out: str, options: Options, advised_identity: str) -> None:
    """A directory holds one run: resuming with other settings would mix two experiments."""
    path = os.path.join(out, RUN_FILE)
    wanted = {**asdict(options), "csmith_options": list(options.csmith_options)}
    try:
        with open(path) as handle:
            recorded = json.load(handle)
    except FileNotFoundError:
        with open(path, "w") as handle:
            json.dump({**wanted, "advised": advised_identity}, handle, indent=1)
        return
    recorded.setdefault("advisor", POPULAR)  # a run of before the option
    differs = [key for key in ("seed", "lists", "level", "advisor", "csmith_options")
               if recorded.get(key) != wanted[key]]
    if differs:
        raise CampaignError(f"{out} holds a run with other {', '.join(differs)} "
                            f"({', '.join(f'{k}={recorded.get(k)!r}' for k in differs)}): "
                            "use another --out")
    before = recorded.get("advised", recorded.get("popular"))
    if before != advised_identity:
        print(f"note: the {options.advisor} lists changed since this run began ({before}"
              f" -> {advised_identity}); each program records the lists it used",
              file=sys.stderr)


def find_tools() -> Tools:
    if shutil.which(CSMITH) is None or not os.path.isdir(CSMITH_INCLUDE):
        raise CampaignError("csmith is missing: apt-get install csmith libcsmith-dev")
    try:
        clang = default_clang("", os.environ.get("PATH", ""), frozenset())
        return check_tools(clang, "")
    except ToolchainError as exc:
        raise CampaignError(str(exc)) from None


def load_advised(advisor: str) -> tuple[tuple[PassList, ...], str]:
    """The lists `advisor` chooses from, in its order, and its identity (as in cache keys)."""
    from llmcc.advisor import AdvisorError

    try:
        if advisor == FOREST:
            from llmcc.advisor.forest import FOREST_FILE, Forest, file_identity

            return tuple(Forest.load(FOREST_FILE).lists), file_identity(FOREST_FILE)
        from llmcc.advisor.popular import PopularAdvisor

        popular = PopularAdvisor.load()
        if advisor == SEARCH:  # its seeds, and the identity of its budget
            from llmcc.advisor.search import identity
            from llmcc.config import ConfigError, load

            try:
                return popular.lists, identity(load(), popular.identity)
            except ConfigError as exc:
                raise CampaignError(str(exc)) from None
        return popular.lists, popular.identity
    except AdvisorError as exc:
        raise CampaignError(str(exc)) from None


def run_campaign(out: str, programs: int, options: Options, jobs: int = 1,
                 advised: tuple[PassList, ...] | None = None,
                 evaluator_class: type[Evaluator] = Evaluator,
                 progress: Callable[[str], None] | None = None) -> dict:
    """Test programs 0..programs-1 not yet in DIR/results.jsonl; returns the summary of all.

    `advised` replaces the advisor's lists (tests); by default they are read now.
    """
    tools = find_tools()
    if advised is None:
        advised, identity = load_advised(options.advisor)
    else:
        identity = "given:" + hashlib.blake2b(repr(advised).encode(), digest_size=8).hexdigest()
    os.makedirs(out, exist_ok=True)
    _check_run_file(out, options, identity)
    done = {r["program"] for r in read_records(out) if r.get("seed") == options.seed}
    pending = [i for i in range(programs) if i not in done]
    work = partial(check_program, out=out, options=options, tools=tools, advised=advised,
                   advised_identity=identity, evaluator_class=evaluator_class)
    with open(os.path.join(out, RESULTS), "a") as results:
        def record(finished: dict) -> None:
            results.write(json.dumps(finished, separators=(",", ":")) + "\n")
            results.flush()
            if progress:
                failures = [e for e in finished["lists"] if e["outcome"] in FAILURES]
                progress(f"program {finished['program']}: {finished['status']}"
                         f"{' (' + finished['reason'] + ')' if finished['reason'] else ''}, "
                         f"{len(finished['lists'])} lists, {len(failures)} failing, "
                         f"{finished['seconds']:.1f}s")

        if jobs <= 1:
            for index in pending:
                record(work(index))
        else:
            pool = ProcessPoolExecutor(max_workers=jobs)
            try:
                for future in as_completed([pool.submit(work, i) for i in pending]):
                    record(future.result())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
    return summarise(read_records(out))


def summarise(records: list[dict]) -> dict:
    """Pure: the figures of a run from its results lines."""
    programs: Counter = Counter(r["status"] for r in records)
    outcomes: Counter = Counter(e["outcome"] for r in records for e in r.get("lists", []))
    return {
        "programs": len(records), "tested": programs[TESTED], "skipped": programs[SKIPPED],
        "baseline_differs": programs[BASELINE_DIFFERS],
        "lists_tried": sum(outcomes.values()), "passed": outcomes[MATCH],
        "objects_run": sum(r.get("objects_run", 0) for r in records),
        "rejected": outcomes[REJECTED], "mismatches": outcomes[MISMATCH],
        "crashes": outcomes[CRASH], "timeouts": outcomes[TIMEOUT],
        "link_errors": outcomes[LINK_ERROR],
        "run_only_under_current_rule": sum(1 for r in records for e in r.get("lists", [])
                                           if e.get("former_rule_refused")
                                           and e["outcome"] != REJECTED),
    }


def summary_line(s: dict) -> str:
    return (f"programs {s['programs']} (tested {s['tested']}, skipped {s['skipped']}, "
            f"baseline differs {s['baseline_differs']}); lists tried {s['lists_tried']}: "
            f"passed {s['passed']} ({s['objects_run']} distinct objects), rejected "
            f"{s['rejected']}, mismatches {s['mismatches']}, "
            f"crashes {s['crashes']}, timeouts {s['timeouts']}, "
            f"link errors {s['link_errors']}; built and run only because of the current symbol "
            f"rule (the former one refused them) {s['run_only_under_current_rule']}")


def report(records: list[dict]) -> str:
    """Markdown: outcomes by where the lists came from, skips, failures, rejection reasons."""
    s = summarise(records)
    entries = [e for r in records for e in r.get("lists", [])]
    lines = [summary_line(s), "",
             "| lists from | tried | " + " | ".join(OUTCOMES) + " |",
             "|---" * (len(OUTCOMES) + 2) + "|"]
    seen = {e["origin"] for e in entries}
    for origin in (*(o for o in ORIGINS if o in seen), "all"):
        chosen = [e for e in entries if origin in ("all", e["origin"])]
        counts = Counter(e["outcome"] for e in chosen)
        lines.append(f"| {origin} | {len(chosen)} | "
                     + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")
    odd = [r for r in records if r["status"] != TESTED]
    if odd:
        lines += ["", "| program | status | reason |", "|---|---|---|"]
        lines += [f"| {r['program']} | {r['status']} | {r['reason']} |"
                  for r in sorted(odd, key=lambda r: r["program"])]
    failing = [(r, e) for r in records for e in r.get("lists", []) if e["outcome"] in FAILURES]
    if failing:
        lines += ["", "| reproducer | outcome | minimal list | detail |", "|---|---|---|---|"]
        lines += [f"| {e['reproducer']} | {e['outcome']} | `{e['minimal']}` | {e['error']} |"
                  for _, e in failing]
    reasons = Counter(e["error"].split(":")[0] for e in entries if e["outcome"] == REJECTED)
    if reasons:
        lines += ["", "| rejected because | lists |", "|---|---|"]
        lines += [f"| {reason} | {count} |" for reason, count in reasons.most_common(10)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llmcc.reliability.differential",
        description="Differential testing of pass lists on csmith programs (see module doc).")
    parser.add_argument("--out", required=True, help="run directory (results.jsonl, reproducers/)")
    parser.add_argument("--programs", type=int, default=100, help="programs 0..N-1 (default 100)")
    parser.add_argument("--lists", type=int, default=8, help="candidate lists per program")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--advisor", default=POPULAR, choices=ADVISORS,
                        help="whose lists come first: the popular lists (default), every "
                             "list of the shipped forest, or the smallest a search finds on "
                             "each program")
    parser.add_argument("--level", default="z", choices=list("123sz"),
                        help="optimisation level of the wrapped compile (default z)")
    parser.add_argument("--run-timeout", type=float, default=5.0,
                        help="seconds the -O0 reference may run (longer programs are skipped)")
    parser.add_argument("--report", action="store_true",
                        help="print a Markdown report of DIR/results.jsonl and exit")
    args = parser.parse_args(argv)
    if args.report:
        print(report(read_records(args.out)))
        return 0
    options = Options(seed=args.seed, lists=args.lists, level=args.level,
                      advisor=args.advisor, run_timeout=args.run_timeout)
    started = time.perf_counter()
    try:
        figures = run_campaign(args.out, args.programs, options, args.jobs,
                               progress=lambda line: print(line, file=sys.stderr, flush=True))
    except CampaignError as exc:
        print(f"differential: {exc}", file=sys.stderr)
        return 2
    print(f"{summary_line(figures)} [{time.perf_counter() - started:.0f}s]")
    failed = sum(figures[k] for k in ("mismatches", "crashes", "timeouts", "link_errors"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
