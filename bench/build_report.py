"""The build benchmark's figures (bench/build.py): sizes and times of every project and setting
as tables (Markdown), CSV files and a plot. Pure functions of bench/build.py's results, apart from
the files they write.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from build import Obj, ProjectResult


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else math.nan


@dataclass
class SizeStats:
    objects: int = 0
    plain: int = 0
    ours: int = 0
    ratios: list[float] = field(default_factory=list)
    regressions: int = 0
    smaller: int = 0
    missing: int = 0  # objects plain clang produced and llmcc's build did not
    extra: int = 0

    def add(self, plain: dict[str, Obj], ours: dict[str, Obj]) -> None:
        common = sorted(set(plain) & set(ours))
        self.missing += len(set(plain) - set(ours))
        self.extra += len(set(ours) - set(plain))
        for rel in common:
            p, o = plain[rel].size, ours[rel].size
            self.objects += 1
            self.plain += p
            self.ours += o
            self.regressions += o > p
            self.smaller += o < p
            if p > 0 and o > 0:
                self.ratios.append(o / p)

    @property
    def saved(self) -> float:
        return 100.0 * (self.plain - self.ours) / self.plain if self.plain else math.nan

    @property
    def geomean_saved(self) -> float:
        return 100.0 * (1.0 - geomean(self.ratios)) if self.ratios else math.nan


def passthrough_ms(results: list[ProjectResult]) -> tuple[float, float, int]:
    """Extra wall and CPU milliseconds per llmcc call at -O0, over `results` together."""
    wall = cpu = 0.0
    calls = 0
    for r in results:
        plain0, ours0 = r.get("plain-O0"), r.get("llmcc-O0")
        if not plain0 or not ours0 or plain0.error or ours0.error or not ours0.events:
            continue
        wall += ours0.wall - plain0.wall
        cpu += ours0.cpu - plain0.cpu
        calls += len(ours0.events)
    if not calls:
        return math.nan, math.nan, 0
    return 1000.0 * wall / calls, 1000.0 * cpu / calls, calls


def _fmt(value: float, digits: int = 2, suffix: str = "") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else (
        f"{value:.{digits}f}{suffix}")


@dataclass
class Row:
    """One line of the table: a project (or all of them) at one k."""

    project: str
    k: int
    size: SizeStats
    plain_wall: float
    cold_wall: float
    warm_wall: float
    pass_wall_ms: float
    pass_cpu_ms: float
    pass_calls: int
    intercepted: int
    fallbacks: int
    warm_identical: str
    cpu: dict[str, float]  # plain, cold, warm: CPU seconds of the whole build

    @property
    def cold_ratio(self) -> float:
        return self.cold_wall / self.plain_wall if self.plain_wall else math.nan

    @property
    def warm_ratio(self) -> float:
        return self.warm_wall / self.plain_wall if self.plain_wall else math.nan

    def cpu_ratio(self, setting: str) -> float:
        return self.cpu[setting] / self.cpu["plain"] if self.cpu["plain"] else math.nan


def table_rows(results: list[ProjectResult], ks: list[int]) -> list[Row]:
    rows: list[Row] = []
    ok = [r for r in results if not r.error]
    for k in ks:
        total = SizeStats()
        sums = {"plain": 0.0, "cold": 0.0, "warm": 0.0}
        cpus = {"plain": 0.0, "cold": 0.0, "warm": 0.0}
        counted = {"intercepted": 0, "fallbacks": 0}
        identical_all = True
        any_warm = False
        for r in ok:
            plain, cold, warm = r.get("plain"), r.get("cold", k), r.get("warm", k)
            if cold is None or cold.error:
                continue
            size = SizeStats()
            size.add(plain.objects, cold.objects)
            total.add(plain.objects, cold.objects)
            outcomes = cold.outcomes()
            intercepted = sum(outcomes.get(o, 0) for o in ("miss", "hit", "direct_hit"))
            fallbacks = outcomes.get("fallback", 0)
            counted["intercepted"] += intercepted
            counted["fallbacks"] += fallbacks
            warm_ok = warm is not None and not warm.error
            identical = "n/a"
            if warm_ok:
                any_warm = True
                same = all(warm.objects.get(rel) and warm.objects[rel].digest == o.digest
                           for rel, o in cold.objects.items()) and len(warm.objects) == len(
                    cold.objects)
                identical = "yes" if same else "NO"
                identical_all &= same
            pw, pc, calls = passthrough_ms([r])
            cpu = {"plain": plain.cpu, "cold": cold.cpu,
                   "warm": warm.cpu if warm_ok else math.nan}
            rows.append(Row(r.project.name, k, size, plain.wall, cold.wall,
                            warm.wall if warm_ok else math.nan, pw, pc, calls, intercepted,
                            fallbacks, identical, cpu))
            sums["plain"] += plain.wall
            sums["cold"] += cold.wall
            sums["warm"] += warm.wall if warm_ok else math.nan
            for key in cpus:
                cpus[key] += cpu[key]
        if total.objects:
            pw, pc, calls = passthrough_ms(ok)
            rows.append(Row("all", k, total, sums["plain"], sums["cold"], sums["warm"], pw, pc,
                            calls, counted["intercepted"], counted["fallbacks"],
                            ("yes" if identical_all else "NO") if any_warm else "n/a", cpus))
    order = {r.project.name: i for i, r in enumerate(ok)}
    rows.sort(key=lambda row: (order.get(row.project, len(order)), row.k))
    return rows


TABLE_HEADER = ("| project | k | objects | plain B | llmcc B | saved % | geomean TU saved % "
                "| regressions | cold/plain | warm/plain | passthrough ms/call |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def markdown_table(rows: list[Row]) -> str:
    lines = [TABLE_HEADER]
    for row in rows:
        s = row.size
        name = f"**{row.project}**" if row.project == "all" else row.project
        lines.append(
            f"| {name} | {row.k} | {s.objects} | {s.plain} | {s.ours} | {_fmt(s.saved)} "
            f"| {_fmt(s.geomean_saved)} | {s.regressions} | {_fmt(row.cold_ratio)} "
            f"| {_fmt(row.warm_ratio)} | {_fmt(row.pass_wall_ms, 1)} |")
    return "\n".join(lines)


def details_table(results: list[ProjectResult]) -> str:
    lines = [("| project | plain -Oz s | configure s (plain/llmcc) | -O0 plain s | -O0 llmcc s "
             "| llmcc calls | extra ms/call wall | extra ms/call CPU | O0 objects identical |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if r.error:
            continue
        plain, plain0, ours0 = r.get("plain"), r.get("plain-O0"), r.get("llmcc-O0")
        pw, pc, calls = passthrough_ms([r])
        ok0 = plain0 and ours0 and not plain0.error and not ours0.error
        same = "n/a"
        if ok0:
            same = "yes" if {k: o.digest for k, o in plain0.objects.items()} == {
                k: o.digest for k, o in ours0.objects.items()} else "NO"
        conf = (f"{r.configure_seconds.get('plain-Oz', 0):.1f}/"
                f"{r.configure_seconds.get('llmcc-Oz', 0):.1f}")
        lines.append(f"| {r.project.name} | {plain.wall:.2f} | {conf} "
                     f"| {_fmt(plain0.wall if ok0 else math.nan)} "
                     f"| {_fmt(ours0.wall if ok0 else math.nan)} | {calls} | {_fmt(pw, 1)} "
                     f"| {_fmt(pc, 1)} | {same} |")
    return "\n".join(lines)


def checks_table(rows: list[Row]) -> str:
    lines = [("| project | k | TUs intercepted | fallbacks | objects smaller | missing/extra "
              "| warm objects identical to cold | cold/plain CPU | warm/plain CPU |"),
             "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for row in rows:
        lines.append(f"| {row.project} | {row.k} | {row.intercepted} | {row.fallbacks} "
                     f"| {row.size.smaller} | {row.size.missing}/{row.size.extra} "
                     f"| {row.warm_identical} | {_fmt(row.cpu_ratio('cold'))} "
                     f"| {_fmt(row.cpu_ratio('warm'))} |")
    return "\n".join(lines)


STAGES = ("startup", "frontend", "baseline", "advisor", "candidates")


def stages_table(results: list[ProjectResult], ks: list[int]) -> str:
    """Where the cold builds' time went, from the stages of llmcc's events (the last cold build
    of each k), in units of plain clang's CPU for the same projects. `rest` is the rest of
    llmcc's compile step: direct-mode keys, cache reads and writes, the output's write."""
    lines = [("| k | " + " | ".join(STAGES) + " | rest | sum | cold/plain CPU |"),
             "|---:|" + "---:|" * (len(STAGES) + 3)]
    for k in ks:
        builds = [(r.get("plain"), r.get("cold", k)) for r in results if not r.error]
        builds = [(p, c) for p, c in builds if c is not None and not c.error and c.events]
        plain_cpu = sum(p.cpu for p, _ in builds)
        if not plain_cpu:
            continue
        totals = dict.fromkeys((*STAGES, "rest"), 0.0)
        for _, cold in builds:
            for event in cold.events:
                stages = event.get("stages", {})
                for stage in STAGES:
                    totals[stage] += stages.get(stage, 0.0)
                totals["rest"] += stages.get("total", 0.0) - sum(
                    stages.get(stage, 0.0) for stage in STAGES if stage != "startup")
        cold_cpu = sum(c.cpu for _, c in builds)
        cells = [_fmt(totals[name] / plain_cpu) for name in (*STAGES, "rest")]
        lines.append(f"| {k} | " + " | ".join(cells) + f" | {_fmt(sum(totals.values()) / plain_cpu)}"
                     f" | {_fmt(cold_cpu / plain_cpu)} |")
    return "\n".join(lines)


def write_csv(path: Path, results: list[ProjectResult], advisor_id: str) -> None:
    fields = ["project", "package", "setting", "k", "ok", "error", "wall_s", "walls_s", "cpu_s",
              "wall_vs_plain", "objects", "text_data", "plain_text_data", "saved_pct",
              "geomean_tu_saved_pct", "regressions", "smaller", "missing", "extra",
              "varying_between_reps", "calls", "outcomes", "advisor"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for r in results:
            if r.error:
                writer.writerow({"project": r.project.name, "package": r.project.package,
                                 "ok": 0, "error": r.error, "advisor": advisor_id})
                continue
            plain = r.get("plain")
            plain0 = r.get("plain-O0")
            for b in r.builds:
                # sizes and times against the plain clang build at the same level
                reference = plain0 if b.setting in ("plain-O0", "llmcc-O0") else plain
                size = SizeStats()
                if not b.error:
                    size.add(reference.objects if reference else {}, b.objects)
                advisors = sorted({e.get("advisor") for e in b.events if e.get("advisor")})
                writer.writerow({
                    "project": r.project.name, "package": r.project.package,
                    "setting": b.setting, "k": "" if b.k is None else b.k,
                    "ok": int(not b.error), "error": b.error,
                    "wall_s": _fmt(b.wall, 3), "walls_s": ";".join(f"{w:.3f}" for w in b.walls),
                    "cpu_s": _fmt(b.cpu, 3),
                    "wall_vs_plain": _fmt(b.wall / reference.wall if b.walls and reference
                                          and reference.walls else math.nan, 3),
                    "objects": len(b.objects), "text_data": sum(o.size for o in b.objects.values()),
                    "plain_text_data": size.plain, "saved_pct": _fmt(size.saved, 3),
                    "geomean_tu_saved_pct": _fmt(size.geomean_saved, 3),
                    "regressions": size.regressions, "smaller": size.smaller,
                    "missing": size.missing, "extra": size.extra,
                    "varying_between_reps": len(b.varying),
                    "calls": len(b.events) if b.events else "",
                    "outcomes": json.dumps(b.outcomes(), sort_keys=True) if b.events else "",
                    "advisor": ";".join(advisors) or (advisor_id if b.setting in ("cold", "warm")
                                                      else ""),
                })


def write_objects_csv(path: Path, results: list[ProjectResult], ks: list[int]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["project", "object", "plain", *[f"k{k}" for k in ks]])
        for r in results:
            if r.error:
                continue
            plain = r.get("plain")
            for rel, obj in sorted(plain.objects.items()):
                sizes = []
                for k in ks:
                    cold = r.get("cold", k)
                    got = cold.objects.get(rel) if cold and not cold.error else None
                    sizes.append(got.size if got else "")
                writer.writerow([r.project.name, rel, obj.size, *sizes])


def _merged_labels(points: list[tuple[float, float, str]], span: tuple[float, float],
                   prefix: str) -> list[tuple[float, float, str]]:
    """One label per cluster of nearly coincident points: `k=3,5,10` instead of three."""
    clusters: list[list[tuple[float, float, str]]] = []
    for x, y, label in points:
        for cluster in clusters:
            cx, cy, _ = cluster[0]
            if abs(x - cx) < 0.03 * span[0] and abs(y - cy) < 0.03 * span[1]:
                cluster.append((x, y, label))
                break
        else:
            clusters.append([(x, y, label)])
    return [(c[0][0], c[0][1], prefix + ",".join(label for _, _, label in c)) for c in clusters]


def plot(path: Path, rows: list[Row], title: str) -> str | None:
    """x: build time / plain clang's, y: % text+data saved; cold per k and warm per k."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install .[bench]): no plot"
    usable = [r for r in rows if not math.isnan(r.cold_ratio) and not math.isnan(r.size.saved)]
    if not usable:
        return "no results to plot"
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=110)
    xs = [r.cold_ratio for r in usable] + [r.warm_ratio for r in usable
                                           if not math.isnan(r.warm_ratio)] + [1.0]
    ys = [r.size.saved for r in usable] + [0.0]
    x_max, y_min, y_max = max(xs) * 1.12, min(ys), max(ys)
    y_pad = max(0.5, 0.1 * (y_max - y_min))
    ax.set_xlim(0, x_max)
    ax.set_ylim(y_min - y_pad, y_max + y_pad)
    span = (x_max, (y_max - y_min) + 2 * y_pad)

    projects = [p for p in dict.fromkeys(r.project for r in usable) if p != "all"]
    colours = plt.get_cmap("tab10")
    for i, name in enumerate(projects):
        mine = [r for r in usable if r.project == name]
        ax.plot([r.cold_ratio for r in mine], [r.size.saved for r in mine], "-o",
                color=colours(i % 10), alpha=0.5, markersize=5, linewidth=1,
                label=f"{name}, cold")
    overall = [r for r in usable if r.project == "all"]
    if overall:
        ax.plot([r.cold_ratio for r in overall], [r.size.saved for r in overall], "-o",
                color="black", markersize=10, linewidth=2,
                label="all projects, cold (empty cache), one point per k")
        for x, y, text in _merged_labels([(r.cold_ratio, r.size.saved, str(r.k))
                                          for r in overall], span, "k="):
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(8, -14),
                        fontsize=10, fontweight="bold")
        warm = [r for r in overall if not math.isnan(r.warm_ratio)]
        if warm:
            ax.plot([r.warm_ratio for r in warm], [r.size.saved for r in warm], "s",
                    markerfacecolor="white", markeredgecolor="tab:red", markeredgewidth=2,
                    markersize=10, linestyle="none",
                    label="all projects, warm (clean rebuild, same cache)")
            for x, y, text in _merged_labels([(r.warm_ratio, r.size.saved, str(r.k))
                                              for r in warm], span, "warm k="):
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(8, 6),
                            fontsize=9, color="tab:red")
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.annotate("plain clang-19 -Oz (x = 1)", (1.0, y_min - y_pad), textcoords="offset points",
                xytext=(4, 4), fontsize=8, color="grey")
    ax.set_xlabel("build wall-clock time / plain clang-19 -Oz build time (make -j)")
    ax.set_ylabel("text+data saved vs plain clang-19 -Oz (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None
