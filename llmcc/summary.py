"""The TU summary: what the model reads about one translation unit, and what the dataset keeps.

The raw IR of a TU can be megabytes, and neither a small model's context nor the dataset should
grow with it. So a TU is described by counts over its whole unoptimised frontend IR: opcode and
type histograms, the library functions and intrinsics it calls, its loops (natural loops, as
LLVM's LoopInfo counts them), its call graph (internal and external callees, recursion,
depth), its global data, and the largest functions one by one with the rest summed.
`summarize_ir` computes it from `llvm-dis` text in one pass; `to_prompt` renders it in a fixed
token budget. Training records it and the compile path calls the same function, so the model is
asked about a TU exactly as it was taught.

The summary is deterministic and the same on every machine: no paths (the ModuleID and
source_filename lines are ignored), no names of the TU's own functions or data (clang derives
some from the file name), only the names of what it calls outside itself. Bump
`SUMMARY_VERSION` whenever a field or the prompt changes meaning: models are tied to a version.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable

from llmcc.toolchain import StepFailed, run

SUMMARY_VERSION = 1
PROMPT_TOKEN_BUDGET = 1500
# The token split of llmcc.train.dataset.TOKEN (words and single punctuation characters), on str.
PROMPT_TOKEN = re.compile(r"\w+|[^\w\s]")

KEPT_FUNCTIONS = 16      # largest functions the summary describes one by one
PROMPT_FUNCTIONS = 8     # ... of which the prompt shows these
KEPT_NAMES = 32          # library callees and intrinsics kept, most called first
PROMPT_NAMES = 16
KEPT_TYPES = 24
PROMPT_TYPES = 16
FUNCTION_OPCODES = 8     # per-function opcode and type histograms, most frequent first
FUNCTION_TYPES = 4
PROMPT_FUNCTION_OPCODES = 6
PROMPT_FUNCTION_TYPES = 3
NAME_CHARS = 40          # a callee's name is cut here (C++ mangled names can run to kilobytes)
SIZE_BUCKETS = (8, 32, 128, 512, 2048)  # instructions per function: le8, le32, ..., gt2048
NOTABLE_ATTRS = frozenset({"alwaysinline", "cold", "hot", "inlinehint", "naked", "noinline",
                           "noreturn", "optnone", "returns_twice"})
LINKAGES = frozenset({"private", "internal", "available_externally", "linkonce", "weak",
                      "common", "appending", "extern_weak", "linkonce_odr", "weak_odr",
                      "external"})
LOCAL_LINKAGES = frozenset({"private", "internal"})
CALLS = frozenset({"call", "invoke", "callbr"})

_NAME = r'(?:[-\w.$]+|"[^"]*")'
_INSTRUCTION = re.compile(r'  (?:%' + _NAME + r' = )?(\w+)')
_LABEL_LINE = re.compile(r'(' + _NAME + r'):')
_LABEL_REF = re.compile(r'label %(' + _NAME + r')')
_CALLEE = re.compile(r'(?<![\w.$"])([@%])(' + _NAME + r')\(')
_ASM = re.compile(r'[^"@(]*?(?<![%\w])asm\b')
_GLOBAL_REF = re.compile(r'@(' + _NAME + r')')
_GLOBAL = re.compile(r'@(' + _NAME + r') = ([^"]*?)\b(global|constant|alias|ifunc) ')
_FUNCTION = re.compile(r'(define|declare) ([^@]*)@(' + _NAME + r')\(')
_ATTR_GROUP = re.compile(r'attributes #(\d+) = \{(.*)\}')
_QUOTED = re.compile(r'"[^"]*"')
_AVAILABLE_EXTERNALLY = re.compile(r'^define available_externally .*$', re.MULTILINE)
_ATTR_GROUP_LINE = re.compile(r'^attributes #(\d+) = \{(.*)\}$', re.MULTILINE)
_WORD = re.compile(r'[a-z_]+')
_GROUP_REF = re.compile(r'#(\d+)')
_ALLOCA_COUNT = re.compile(r', i\d+ ')  # `alloca T, i64 %n`: a run-time sized stack object
# The first type on an instruction line after its opcode: what the instruction operates on
# (the loaded, stored, compared or returned value, the allocated or indexed type).
_FIRST_TYPE = re.compile(
    r'(?<![-\w%@.$"])(?:(i\d+|half|bfloat|float|double|x86_fp80|fp128|ppc_fp128|ptr|void|label'
    r'|token|metadata)\b|<(\d+) x (\w+)|(\[)|(<?\{)|(%"?(?:struct|union|class)\.))')
_TYPE_ATOM = re.compile(
    r' *(?:i(\d+)\b|(half|bfloat|float|double|x86_fp80|fp128|ppc_fp128|ptr(?: addrspace\(\d+\))?'
    r'|void|label|token|metadata|opaque)\b|(\[|<\{|<|\{)|%(' + _NAME + r'))')
_COUNT_X = re.compile(r' *(\d+) x ')
_INTRINSIC_SUFFIX = re.compile(r'(?:p\d+|i\d+|f\d+|bf16|v\d+\w+|nxv\d+\w+|isVoid|s_\w+|sl_\w+)$')
_FLOAT_SIZES = {"half": 2, "bfloat": 2, "float": 4, "double": 8, "x86_fp80": 16, "fp128": 16,
                "ppc_fp128": 16}


class _Function:
    """One defined function while its body is read."""

    __slots__ = ("annotated_loops", "asm", "attrs", "blocks", "callees", "dynamic_allocas",
                 "edges", "groups", "indirect", "instructions", "labels", "linkage",
                 "loop_depth", "loops", "opcodes", "params", "personality", "returns",
                 "stack_bytes", "types", "vararg")

    def __init__(self) -> None:
        self.instructions = 0
        self.opcodes: Counter[str] = Counter()
        self.types: Counter[str] = Counter()
        self.labels: dict[str, int] = {}
        self.blocks = 1
        self.edges: list[tuple[int, str, bool]] = []
        self.callees: Counter[str] = Counter()
        self.indirect = self.asm = self.stack_bytes = self.dynamic_allocas = 0
        self.loops = self.loop_depth = self.annotated_loops = 0


def _round_up(value: int, align: int) -> int:
    return -(-value // align) * align


def _pow2(value: int) -> int:
    return 1 << max(value - 1, 0).bit_length()


class _BadType(ValueError):
    """A type this reader does not know how to lay out; its size counts as 0."""


def _layout(text: str, pos: int, structs: dict[str, str],
            memo: dict[str, tuple[int, int]]) -> tuple[int, int, int]:
    """(alloc size, alignment, end) of the type at `pos`, laid out as on x86-64 (the target of
    every recorded TU): enough to count bytes of data and stack, not a full DataLayout."""
    m = _TYPE_ATOM.match(text, pos)
    if m is None:
        raise _BadType(text[pos:pos + 20])
    end = m.end()
    bits, scalar, opener, name = m.groups()
    if bits is not None:
        size = (int(bits) + 7) // 8
        align = min(_pow2(size), 16)
        return _round_up(size, align), align, end
    if scalar is not None:
        if scalar.startswith("ptr"):
            return 8, 8, end
        size = _FLOAT_SIZES.get(scalar, 0)
        return size, max(size, 1), end
    if name is not None:
        if name not in memo:
            memo[name] = (0, 1)  # a struct cannot hold itself by value: stop a malformed cycle
            size, align, _ = _layout(structs.get(name, "opaque"), 0, structs, memo)
            memo[name] = (size, align)
        return (*memo[name], end)
    if opener in ("[", "<"):
        count = _COUNT_X.match(text, end)
        if count is None:
            raise _BadType(text[pos:pos + 20])
        size, align, end = _layout(text, count.end(), structs, memo)
        closer = "]" if opener == "[" else ">"
        if text[end:end + 1] != closer:
            raise _BadType(text[pos:pos + 20])
        size *= int(count.group(1))
        if opener == "<":  # a vector is aligned to its own (power of two) size
            align = _pow2(max(size, 1))
            size = _round_up(size, align)
        return size, align, end + 1
    packed = opener == "<{"
    size, align = 0, 1
    closer = "}>" if packed else "}"
    while True:
        while text[end:end + 1] == " ":
            end += 1
        if text.startswith(closer, end):
            return _round_up(size, align), align, end + len(closer)
        field_size, field_align, end = _layout(text, end, structs, memo)
        if not packed:
            size = _round_up(size, field_align)
            align = max(align, field_align)
        size += field_size
        if text[end:end + 1] == ",":
            end += 1


def _size_at(text: str, pos: int, structs: dict[str, str],
             memo: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """(size, end) of the type at `pos`; an unknown type is 0 bytes, never an error."""
    try:
        size, _, end = _layout(text, pos, structs, memo)
    except (_BadType, RecursionError):
        return 0, pos
    return size, end


def _type_class(m: re.Match) -> str:
    """A bounded vocabulary of types: scalars by name, vectors by shape, aggregates by kind."""
    scalar, lanes, element, array = m.groups()[:4]
    if scalar is not None:
        if scalar[0] == "i" and scalar not in ("i1", "i8", "i16", "i32", "i64", "i128"):
            return "iN"
        return scalar
    if lanes is not None:
        return f"v{lanes}{element}"
    return "array" if array else "struct"


def _unquote(name: str) -> str:
    return name[1:-1] if name.startswith('"') else name


def _intrinsic(name: str) -> str:
    """llvm.memcpy.p0.p0.i64 -> llvm.memcpy: the operation, not its overloaded types."""
    parts = name.split(".")
    while len(parts) > 2 and _INTRINSIC_SUFFIX.match(parts[-1]):
        parts.pop()
    return ".".join(parts)


def _params(line: str, start: int) -> tuple[int, bool, int]:
    """(parameters, varargs, end) of the parenthesised list opening at `start`."""
    depth = commas = 0
    pos = start
    for pos in range(start, len(line)):
        char = line[pos]
        if char in "([{<":
            depth += 1
        elif char in ")]}>":
            depth -= 1
            if depth == 0:
                break
        elif char == "," and depth == 1:
            commas += 1
    inner = line[start + 1:pos].strip()
    vararg = inner.endswith("...")
    return (commas + 1 if inner else 0) - vararg, vararg, pos + 1


def _linkage(words: str) -> str:
    for word in words.split():
        if word in LINKAGES:
            return word
    return "external"


def _dominators(succs: list[list[int]], preds: list[list[int]]) -> tuple[list[int], list[int]]:
    """(reverse post-order position, immediate dominator) per block, -1 where unreachable
    (Cooper, Harvey and Kennedy's iterative algorithm)."""
    position = [-1] * len(succs)
    post: list[int] = []
    seen = [False] * len(succs)
    seen[0] = True
    work = [(0, iter(succs[0]))]
    while work:
        block, successors = work[-1]
        for succ in successors:
            if not seen[succ]:
                seen[succ] = True
                work.append((succ, iter(succs[succ])))
                break
        else:
            work.pop()
            post.append(block)
    order = post[::-1]
    for i, block in enumerate(order):
        position[block] = i
    idom = [-1] * len(succs)
    idom[0] = 0
    changed = True
    while changed:
        changed = False
        for block in order[1:]:
            new = -1
            for pred in preds[block]:
                if idom[pred] < 0:
                    continue
                if new < 0:
                    new = pred
                    continue
                a, b = pred, new
                while a != b:
                    while position[a] > position[b]:
                        a = idom[a]
                    while position[b] > position[a]:
                        b = idom[b]
                new = a
            if idom[block] != new:
                idom[block] = new
                changed = True
    return position, idom


def _finish_loops(fn: _Function) -> None:
    """Count natural loops as LLVM's LoopInfo does: a header per loop, the target of a back edge
    (a branch to a block that dominates it), nested by the blocks each loop holds."""
    labels = fn.labels
    edges = [(source, labels[target], annotated) for source, target, annotated in fn.edges
             if target in labels]
    fn.labels, fn.edges = {}, []
    if all(target > source for source, target, _ in edges):
        return  # every cycle has an edge to a block laid out at or before its source
    succs: list[list[int]] = [[] for _ in range(fn.blocks)]
    preds: list[list[int]] = [[] for _ in range(fn.blocks)]
    for source, target, _ in edges:
        succs[source].append(target)
        preds[target].append(source)
    position, idom = _dominators(succs, preds)
    latches: dict[int, list[int]] = {}
    annotated_headers = set()
    for source, target, annotated in edges:
        if position[source] < 0 or position[target] > position[source]:
            continue
        block = source
        while position[block] > position[target]:
            block = idom[block]
        if block == target:
            latches.setdefault(target, []).append(source)
            if annotated:
                annotated_headers.add(target)
    loop_of = [-1] * fn.blocks
    parent: list[int] = []
    header_of: list[int] = []
    for header in sorted(latches, key=lambda h: -position[h]):  # inner loops first
        loop = len(parent)
        parent.append(-1)
        header_of.append(header)
        loop_of[header] = loop
        work = list(latches[header])
        while work:
            block = work.pop()
            if loop_of[block] < 0:
                loop_of[block] = loop
                work.extend(p for p in preds[block] if position[p] >= 0)
                continue
            inner = loop_of[block]
            while parent[inner] >= 0:
                inner = parent[inner]
            if inner != loop:
                parent[inner] = loop
                work.extend(p for p in preds[header_of[inner]] if position[p] >= 0)
    depth = [0] * len(parent)
    for loop in range(len(parent) - 1, -1, -1):  # outer loops were found after their inner ones
        depth[loop] = 1 + (depth[parent[loop]] if parent[loop] >= 0 else 0)
    fn.loops, fn.loop_depth = len(parent), max(depth, default=0)
    fn.annotated_loops = len(annotated_headers)


class _Module:
    """Everything one pass over the IR text collects."""

    def __init__(self) -> None:
        self.functions: dict[str, _Function] = {}
        self.declared: dict[str, str] = {}
        self.structs: dict[str, str] = {}
        self.layouts: dict[str, tuple[int, int]] = {}
        self.attr_groups: dict[str, frozenset[str]] = {}
        self.refs: Counter[str] = Counter()
        self.init_refs: Counter[str] = Counter()
        self.globals: list[dict] = []
        self.type_classes: dict[str, str] = {}  # a type as spelled -> its class (a cache)
        self.debug = self.module_asm = 0


def _read_function_line(module: _Module, line: str) -> _Function | None:
    m = _FUNCTION.match(line)
    if m is None:
        return None
    kind, prefix, name = m.groups()
    name = _unquote(name)
    if kind == "declare":
        module.declared[name] = _linkage(prefix)
        return None
    fn = _Function()
    fn.linkage = _linkage(prefix)
    fn.params, fn.vararg, end = _params(line, m.end() - 1)
    first = _FIRST_TYPE.search(prefix)
    fn.returns = _type_class(first) if first else "void"
    tail = _QUOTED.sub("", line[end:])
    fn.groups = _GROUP_REF.findall(tail)
    fn.attrs = sorted(NOTABLE_ATTRS.intersection(_WORD.findall(tail)))
    fn.personality = " personality " in tail
    module.functions[name] = fn
    return fn


def _read_global(module: _Module, line: str) -> None:
    m = _GLOBAL.match(line)
    if m is None:
        return
    name, words, kind = _unquote(m.group(1)), m.group(2), m.group(3)
    rest = m.end()
    if kind in ("alias", "ifunc"):
        module.init_refs.update(_unquote(n) for n in _GLOBAL_REF.findall(line, rest))
        return
    size, end = _size_at(line, rest, module.structs, module.layouts)
    init = line[end:].lstrip()
    linkage = _linkage(words)
    declared = linkage in ("external", "extern_weak") and (not init or init[0] == ",")
    if not declared:
        module.init_refs.update(_unquote(n) for n in _GLOBAL_REF.findall(line, end))
    module.globals.append({
        "name": name, "linkage": linkage, "constant": kind == "constant", "declared": declared,
        "thread_local": "thread_local" in words, "size": size,
        "zero": init.startswith(("zeroinitializer", "undef", "poison")),
        "string": init.startswith('c"') and init.split('"', 2)[1].endswith("\\00")})


def _read_instruction(module: _Module, fn: _Function, line: str, m: re.Match) -> None:
    op = m.group(1)
    if op in ("tail", "musttail", "notail"):
        op = "call"
    pos = m.end()
    if op in CALLS:
        if _ASM.match(line, pos):
            fn.asm += 1
        else:
            callee = _CALLEE.search(line, pos)
            if callee is None or callee.group(1) == "%":
                fn.indirect += 1
            else:
                name = _unquote(callee.group(2))
                if name.startswith("llvm.dbg."):
                    module.debug += 1
                    return
                fn.callees[name] += 1
                module.refs[name] -= 1  # the callee is not a reference: cancels its count below
    fn.instructions += 1
    fn.opcodes[op] += 1
    first = _FIRST_TYPE.search(line, pos)
    if first is not None:
        spelled = first.group()
        kind = module.type_classes.get(spelled)
        if kind is None:
            kind = module.type_classes[spelled] = _type_class(first)
        fn.types[kind] += 1
    if op == "alloca":
        size, end = _size_at(line, pos, module.structs, module.layouts)
        if _ALLOCA_COUNT.match(line, end):
            fn.dynamic_allocas += 1
        else:
            fn.stack_bytes += size
    if "label %" in line:
        annotated = "!llvm.loop" in line
        block = fn.blocks - 1
        fn.edges.extend((block, target, annotated) for target in _LABEL_REF.findall(line, pos))
    if "@" in line:
        module.refs.update(_unquote(n) for n in _GLOBAL_REF.findall(line, pos))


def _parse(text: str) -> _Module:
    """One pass over the lines of textual IR."""
    module = _Module()
    fn: _Function | None = None
    for line in text.splitlines():
        if fn is not None:
            first = line[:1]
            if first == " ":
                if line.startswith("    "):
                    # continued: switch cases, invoke's `to label`, landingpad clauses (and debug
                    # records, which are not code)
                    if line.lstrip().startswith("#dbg_"):
                        module.debug += 1
                    elif "label %" in line:
                        fn.edges.extend((fn.blocks - 1, target, False)
                                        for target in _LABEL_REF.findall(line))
                    continue
                m = _INSTRUCTION.match(line)
                if m is not None:
                    _read_instruction(module, fn, line, m)
            elif first == "}":
                _finish_loops(fn)
                fn = None
            elif first and first != ";":
                label = _LABEL_LINE.match(line)
                if label is not None:
                    if fn.instructions or fn.labels:
                        fn.blocks += 1
                    fn.labels[_unquote(label.group(1))] = fn.blocks - 1
            continue
        first = line[:1]
        if first == "!" or first == ";" or not first:
            continue
        if first == "@":
            _read_global(module, line)
        elif first == "%":
            name, sep, body = line.partition(" = type ")
            if sep:
                module.structs[_unquote(name[1:])] = body
        elif line.startswith(("define ", "declare ")):
            fn = _read_function_line(module, line)
        elif line.startswith("attributes #"):
            group = _ATTR_GROUP.match(line)
            if group is not None:
                words = _WORD.findall(_QUOTED.sub("", group.group(2)))
                module.attr_groups[group.group(1)] = NOTABLE_ATTRS.intersection(words)
        elif line.startswith("module asm "):
            module.module_asm += 1
    return module


def _top(counts: Counter[str], n: int) -> dict[str, int]:
    """The n largest counts (ties by name), as a dict sorted by name."""
    ranked = sorted(((-c, k) for k, c in counts.items() if c > 0))[:n]
    return {k: -c for c, k in sorted(ranked, key=lambda item: item[1])}


def _components(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative), each after every one it reaches."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root, successors in graph.items():
        if root in index:
            continue
        work = [(root, iter(successors))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(graph[succ])))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    found.append(component)
    return found


def _address_taken(module: _Module, name: str) -> bool:
    """Referred to other than as a callee: by an instruction operand or by global data."""
    return module.refs[name] > 0 or module.init_refs[name] > 0


def _call_graph(module: _Module, callers: Counter[str]) -> tuple[dict[str, int], set[str]]:
    """The shape of the TU's own call graph (entry points, leaves, recursion, longest chain),
    and the functions that can call themselves."""
    defined = module.functions
    graph = {name: sorted(n for n in fn.callees if n in defined) for name, fn in defined.items()}
    components = _components(graph)
    component_of = {name: i for i, members in enumerate(components) for name in members}
    depth: list[int] = []
    recursive: set[str] = set()
    for i, members in enumerate(components):
        below = [depth[component_of[s]] for m in members for s in graph[m]
                 if component_of[s] != i]
        depth.append(1 + max(below, default=0))
        if len(members) > 1 or members[0] in graph[members[0]]:
            recursive.update(members)
    called_by_others = {s for name, succs in graph.items() for s in succs if s != name}
    return {
        "edges": sum(len(succs) for succs in graph.values()),
        "roots": sum(1 for name in defined if name not in called_by_others),
        "leaves": sum(1 for fn in defined.values()
                      if not fn.indirect and all(n.startswith("llvm.") for n in fn.callees)),
        "recursive": len(recursive),
        "self_recursive": sum(1 for name, succs in graph.items() if name in succs),
        "depth": max(depth, default=0),
        "called_once": sum(1 for name, fn in defined.items()
                           if fn.linkage in LOCAL_LINKAGES and callers[name] == 1
                           and not _address_taken(module, name)),
        "address_taken": sum(1 for name in defined if _address_taken(module, name)),
        "dead_local": sum(1 for name, fn in defined.items()
                          if fn.linkage in LOCAL_LINKAGES and not callers[name]
                          and not _address_taken(module, name)),
    }, recursive


def _bucket(instructions: int) -> str:
    for limit in SIZE_BUCKETS:
        if instructions <= limit:
            return f"le{limit}"
    return f"gt{SIZE_BUCKETS[-1]}"


def _function_attrs(module: _Module, fn: _Function) -> list[str]:
    attrs = set(fn.attrs)
    for group in fn.groups:
        attrs |= module.attr_groups.get(group, frozenset())
    return sorted(attrs)


def _function_entry(module: _Module, name: str, fn: _Function, callers: Counter[str],
                    recursive: set[str]) -> dict:
    defined = module.functions
    internal = sum(n for callee, n in fn.callees.items() if callee in defined)
    intrinsic = sum(n for callee, n in fn.callees.items()
                    if callee not in defined and callee.startswith("llvm."))
    return {
        "linkage": fn.linkage, "instructions": fn.instructions, "blocks": fn.blocks,
        "loops": fn.loops, "loop_depth": fn.loop_depth, "params": fn.params,
        "vararg": fn.vararg, "returns": fn.returns, "attrs": _function_attrs(module, fn),
        "calls_internal": internal, "calls_intrinsic": intrinsic,
        "calls_external": sum(fn.callees.values()) - internal - intrinsic,
        "calls_indirect": fn.indirect, "calls_asm": fn.asm, "callers": callers[name],
        "address_taken": _address_taken(module, name),
        "recursive": name in recursive, "stack_bytes": fn.stack_bytes,
        "dynamic_allocas": fn.dynamic_allocas,
        "opcodes": _top(fn.opcodes, FUNCTION_OPCODES), "types": _top(fn.types, FUNCTION_TYPES),
    }


def _sum(entries: Iterable[dict], key: str) -> int:
    return sum(entry[key] for entry in entries)


def _summarise(module: _Module) -> dict:
    defined = module.functions
    opcodes: Counter[str] = Counter()
    types: Counter[str] = Counter()
    callees: Counter[str] = Counter()
    for fn in defined.values():
        opcodes.update(fn.opcodes)
        types.update(fn.types)
        callees.update(fn.callees)
    callers: Counter[str] = Counter()
    for name, fn in defined.items():
        for callee, n in fn.callees.items():
            if callee in defined and callee != name:
                callers[callee] += n
    library = Counter({_unquote(n)[:NAME_CHARS]: c for n, c in callees.items()
                       if n not in defined and not n.startswith("llvm.")})
    intrinsics: Counter[str] = Counter()
    for name, count in callees.items():
        if name not in defined and name.startswith("llvm."):
            intrinsics[_intrinsic(name)[:NAME_CHARS]] += count
    graph, recursive = _call_graph(module, callers)
    entries = [_function_entry(module, name, fn, callers, recursive)
               for name, fn in defined.items()]
    ranked = sorted(range(len(entries)), key=lambda i: (-entries[i]["instructions"], i))
    kept = [entries[i] for i in ranked[:KEPT_FUNCTIONS]]
    rest = [entries[i] for i in ranked[KEPT_FUNCTIONS:]]
    calls = {"internal": sum(c for n, c in callees.items() if n in defined),
             "external": sum(library.values()), "intrinsic": sum(intrinsics.values()),
             "indirect": sum(fn.indirect for fn in defined.values()),
             "asm": sum(fn.asm for fn in defined.values()),
             "external_functions": len(library), "intrinsic_functions": len(intrinsics),
             **graph}
    data = [g for g in module.globals if not g["declared"]]
    local_data = [g for g in data if g["linkage"] in LOCAL_LINKAGES]
    globals_ = {
        "defined": len(data), "declared": len(module.globals) - len(data),
        "constant": sum(1 for g in data if g["constant"]), "local": len(local_data),
        "thread_local": sum(1 for g in data if g["thread_local"]),
        "data_bytes": sum(g["size"] for g in data if not g["zero"]),
        "zero_bytes": sum(g["size"] for g in data if g["zero"]),
        "strings": sum(1 for g in data if g["string"]),
        "string_bytes": sum(g["size"] for g in data if g["string"]),
        "function_refs": sum(module.init_refs[name] for name in
                             sorted(set(defined) | set(module.declared))),
        "dead_local": sum(1 for g in local_data if not _address_taken(module, g["name"])),
    }
    totals = {
        "functions": len(defined),
        "declarations": sum(1 for n in module.declared if not n.startswith("llvm.")),
        "local_functions": sum(1 for fn in defined.values() if fn.linkage in LOCAL_LINKAGES),
        "instructions": sum(fn.instructions for fn in defined.values()),
        "blocks": sum(fn.blocks for fn in defined.values()),
        "loops": sum(fn.loops for fn in defined.values()),
        "loop_depth": max((fn.loop_depth for fn in defined.values()), default=0),
        "annotated_loops": sum(fn.annotated_loops for fn in defined.values()),
        "stack_bytes": sum(fn.stack_bytes for fn in defined.values()),
        "struct_types": len(module.structs), "debug_records": module.debug,
        "module_asm": module.module_asm,
        "eh_functions": sum(1 for fn in defined.values() if fn.personality),
    }
    sizes = Counter(_bucket(fn.instructions) for fn in defined.values())
    return {
        "version": SUMMARY_VERSION, "module": totals,
        "size_buckets": {_bucket(limit): sizes[_bucket(limit)]
                         for limit in (*SIZE_BUCKETS, SIZE_BUCKETS[-1] + 1)},
        "opcodes": dict(sorted(opcodes.items())), "types": _top(types, KEPT_TYPES),
        "calls": calls, "library_calls": _top(library, KEPT_NAMES),
        "intrinsics": _top(intrinsics, KEPT_NAMES), "globals": globals_,
        "functions": kept,
        "rest": {"functions": len(rest), "instructions": _sum(rest, "instructions"),
                 "blocks": _sum(rest, "blocks"), "loops": _sum(rest, "loops"),
                 "loop_depth": max((e["loop_depth"] for e in rest), default=0),
                 "calls": sum(e["calls_internal"] + e["calls_external"] + e["calls_indirect"]
                              for e in rest),
                 "local": sum(1 for e in rest if e["linkage"] in LOCAL_LINKAGES),
                 "stack_bytes": _sum(rest, "stack_bytes")},
    }


def _sorted_keys(value: object) -> object:
    if isinstance(value, dict):
        return {key: _sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(item) for item in value]
    return value


def summarize_ir(text: str) -> dict:
    """The summary of one TU from its textual IR (`llvm-dis` output); JSON-ready, keys sorted."""
    return _sorted_keys(_summarise(_parse(text)))


def available_externally(text: str) -> dict[str, bool]:
    """The functions a module's IR (`text`) defines `available_externally`, each with whether it
    is always-inline: bodies the frontend keeps only for inlining, since the program defines
    them elsewhere (what llmcc.interface may rely on of that)."""
    groups = {m.group(1): m.group(2) for m in _ATTR_GROUP_LINE.finditer(text)}
    bodies = {}
    for m in _AVAILABLE_EXTERNALLY.finditer(text):
        line = m.group(0)
        function = _FUNCTION.match(line)
        if function is None:
            continue
        tail = _QUOTED.sub("", line[_params(line, function.end() - 1)[2]:])
        words = set(_WORD.findall(tail))
        words.update(*(_WORD.findall(_QUOTED.sub("", groups.get(group, "")))
                       for group in _GROUP_REF.findall(tail)))
        bodies[_unquote(function.group(3))] = "alwaysinline" in words
    return bodies


def disassemble(path: str, llvm_dis: str, timeout: float = 120.0) -> str:
    """The text IR of a bitcode file; StepFailed if llvm-dis cannot read it."""
    code, out, err = run([llvm_dis, "-o", "-", path], timeout)
    if code != 0:
        raise StepFailed(f"llvm-dis {os.path.basename(path)} failed: "
                         f"{err.decode(errors='replace').strip()[:200]}")
    return out.decode("utf-8", errors="replace")


def summarize_bitcode(path: str, llvm_dis: str, timeout: float = 120.0) -> dict:
    """The summary of a bitcode file (`tu.bc` of a compile, `<hash>.bc` of a record)."""
    return summarize_ir(disassemble(path, llvm_dis, timeout))


def prompt_tokens(text: str) -> int:
    """Tokens as the dataset counts them (see llmcc.train.dataset)."""
    return len(PROMPT_TOKEN.findall(text))


def _ranked(histogram: dict[str, int], n: int | None = None) -> list[tuple[str, int]]:
    return sorted(histogram.items(), key=lambda item: (-item[1], item[0]))[:n]


def _pairs(histogram: dict[str, int], n: int | None = None) -> str:
    return " ".join(f"{key} {count}" for key, count in _ranked(histogram, n))


def _fields(values: dict, names: Iterable[tuple[str, str]]) -> str:
    return " ".join(f"{label} {int(values[key])}" for label, key in names)


_MODULE_FIELDS = (("functions", "functions"), ("local", "local_functions"),
                  ("declared", "declarations"), ("inst", "instructions"), ("blocks", "blocks"),
                  ("loops", "loops"), ("depth", "loop_depth"), ("annotated", "annotated_loops"),
                  ("stack", "stack_bytes"), ("structs", "struct_types"),
                  ("debug", "debug_records"), ("asm", "module_asm"), ("eh", "eh_functions"))
_CALL_FIELDS = (("internal", "internal"), ("external", "external"),
                ("intrinsic", "intrinsic"), ("indirect", "indirect"), ("asm", "asm"),
                ("edges", "edges"), ("roots", "roots"), ("leaves", "leaves"),
                ("recursive", "recursive"), ("self", "self_recursive"), ("depth", "depth"),
                ("once", "called_once"), ("taken", "address_taken"), ("dead", "dead_local"))
_GLOBAL_FIELDS = (("defined", "defined"), ("declared", "declared"), ("constant", "constant"),
                  ("local", "local"), ("tls", "thread_local"), ("data", "data_bytes"),
                  ("zero", "zero_bytes"), ("strings", "strings"),
                  ("string_bytes", "string_bytes"), ("fnrefs", "function_refs"),
                  ("dead", "dead_local"))
_FUNCTION_FIELDS = (("inst", "instructions"), ("blocks", "blocks"), ("loops", "loops"),
                    ("depth", "loop_depth"), ("params", "params"), ("vararg", "vararg"),
                    ("internal", "calls_internal"), ("external", "calls_external"),
                    ("intrinsic", "calls_intrinsic"), ("indirect", "calls_indirect"),
                    ("callers", "callers"), ("taken", "address_taken"),
                    ("recursive", "recursive"), ("stack", "stack_bytes"),
                    ("dynamic", "dynamic_allocas"))
_REST_FIELDS = (("functions", "functions"), ("local", "local"), ("inst", "instructions"),
                ("blocks", "blocks"), ("loops", "loops"), ("depth", "loop_depth"),
                ("calls", "calls"), ("stack", "stack_bytes"))


def _render(summary: dict, functions: int, names: int) -> str:
    calls = summary["calls"]
    lines = [
        f"tu v{summary['version']}",
        "module " + _fields(summary["module"], _MODULE_FIELDS),
        "sizes " + " ".join(f"{_bucket(limit)} {summary['size_buckets'][_bucket(limit)]}"
                            for limit in (*SIZE_BUCKETS, SIZE_BUCKETS[-1] + 1)),
        "opcodes " + _pairs(summary["opcodes"]),
        "types " + _pairs(summary["types"], PROMPT_TYPES),
        "calls " + _fields(calls, _CALL_FIELDS),
        f"library {calls['external_functions']} " + _pairs(summary["library_calls"], names),
        f"intrinsics {calls['intrinsic_functions']} " + _pairs(
            {k.removeprefix("llvm."): v for k, v in summary["intrinsics"].items()}, names),
        "globals " + _fields(summary["globals"], _GLOBAL_FIELDS),
    ]
    for rank, entry in enumerate(summary["functions"][:functions], 1):
        attrs = " ".join(entry["attrs"]) or "-"
        lines.append(f"f{rank} {entry['linkage']} returns {entry['returns']} "
                     + _fields(entry, _FUNCTION_FIELDS) + f" attrs {attrs} ops "
                     + _pairs(entry["opcodes"], PROMPT_FUNCTION_OPCODES)
                     + " types " + _pairs(entry["types"], PROMPT_FUNCTION_TYPES))
    rest = dict(summary["rest"])
    for entry in summary["functions"][functions:]:
        rest["functions"] += 1
        rest["local"] += entry["linkage"] in LOCAL_LINKAGES
        for key in ("instructions", "blocks", "loops", "stack_bytes"):
            rest[key] += entry[key]
        rest["loop_depth"] = max(rest["loop_depth"], entry["loop_depth"])
        rest["calls"] += entry["calls_internal"] + entry["calls_external"]
        rest["calls"] += entry["calls_indirect"]
    lines.append("rest " + _fields(rest, _REST_FIELDS))
    return "\n".join(lines) + "\n"


def to_prompt(summary: dict) -> str:
    """The text the model reads: every section of the summary in a fixed order, within
    PROMPT_TOKEN_BUDGET tokens whatever the TU (fewer functions and names only if need be),
    never containing "<|"."""
    for functions, names in ((PROMPT_FUNCTIONS, PROMPT_NAMES), (4, 8), (2, 4), (0, 0)):
        # "<|" starts the model's special tokens: a callee's quoted name may not write one.
        text = _render(summary, functions, names).replace("<|", "< |")
        if prompt_tokens(text) <= PROMPT_TOKEN_BUDGET:
            return text
    return text
