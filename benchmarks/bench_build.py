"""multilr benchmarks: build time for a 2,000-tensor model, and optimizer step time.

Part 1 (this file): ``multilr.build`` on two models of exactly 2,000 tensors: a stress
case (a stem, 997 numbered blocks each holding a ``Linear(8, 8)`` inside a submodule, a
norm and a head: layer decay makes 1,999 groups of it) for several specs, and a
transformer of the usual shape (``examples/models.py``'s timm-style ViT with 166 blocks
of 12 tensors: a few hundred groups), with and without the model's own timm hints,
with the time split into the parts ``build`` runs: ``extract_table``
(the torch backend's one walk of the model, as columns), ``resolve`` (the framework-free
planner on that table), depth inference alone, and ``emit_table`` (the torch backend
turning the plan into groups with the tensors of the same walk). ``torch
named_parameters`` (one ``list(model.named_parameters())``) is printed as a yardstick for
what one walk over the model costs. When the headline build misses its goal, a cProfile
of the build says which functions take the time.

Part 2 (``bench_step.py``): fused / foreach AdamW ``step()`` of multilr's merged
layer-wise groups against one group, interleaved in one run.

Goals (issue): build <= 10 ms for 2,000 tensors (judged on the minimum CPU time of the
repetitions; the median is shown beside it); merged step <= 1.05x one group with fused
AdamW. They are reported (PASS / MISS), never asserted: the exit code is 0.

Usage::

    .venv/bin/python benchmarks/bench_build.py            # full run (a few minutes)
    .venv/bin/python benchmarks/bench_build.py --quick    # smoke run (~half a minute)
    .venv/bin/python benchmarks/bench_build.py --skip-step
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

import multilr
from multilr import Glob, LayerDecay, Prefix, Rule, Spec
from multilr._depth import depth_list  # private: timed on its own to split resolve
from multilr._plan import resolve  # private: the planner on the table build reads

BUILD_GOAL_MS = 10.0
N_TENSORS = 2000
HEADLINE = "realistic"


# -- the model -------------------------------------------------------------------------


class Block(nn.Module):
    """One stack element: a Linear inside a submodule, so depth "blocks" sees a block."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(8, 8))


class Deep(nn.Module):
    """stem (2 tensors), ``blocks.0..N-1`` (2 each), norm (2), head (2)."""

    def __init__(self, n_tensors: int = N_TENSORS) -> None:
        super().__init__()
        if n_tensors % 2 or n_tensors < 10:
            raise ValueError("n_tensors must be even and >= 10")
        self.stem = nn.Linear(8, 8)
        self.blocks = nn.ModuleList(Block() for _ in range((n_tensors - 6) // 2))
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 8)


# -- the specs -------------------------------------------------------------------------


def specs(model: nn.Module) -> dict[str, Spec]:
    names = [n for n, _ in model.named_parameters()]
    return {
        # layer decay over the blocks + no-decay classes + a head rule + a glob rule
        "realistic": Spec(
            lr=1e-3,
            weight_decay=0.05,
            no_decay=("bias", "norm"),
            rules=[
                Rule(Prefix("head"), lr_mult=10, name="head"),
                Rule(Glob("blocks.*.weight"), weight_decay=0.1, name="block-wd"),
            ],
            layer_decay=LayerDecay(0.75, depth="blocks"),
        ),
        # floor: no rule, no decay: one group
        "minimal": Spec(lr=1e-3, weight_decay=0.05),
        # seed 001 style: an absolute, distinct rate for every tensor
        "per-tensor rates": Spec(lr=1e-3, rates={n: 1e-3 * 0.999**i for i, n in enumerate(names)}),
        # every tensor its own depth
        "tensor decay": Spec(lr=1e-3, weight_decay=0.05, layer_decay=LayerDecay(0.9, depth="tensor")),
    }


def vit_specs(model: nn.Module) -> dict[str, Spec]:
    """The headline spec on the ViT: as a timm user gets it (hints on), and on names alone."""
    spec = specs(model)[HEADLINE]
    # with hints (the default) the depths come from the ViT's group_matcher() regexes and
    # no_weight_decay() adds cls_token/pos_embed; without, from the module tree
    return {
        "vit-166: realistic": spec,
        "vit-166: realistic, model_hints off": replace(spec, model_hints=False),
    }


def vit(n_tensors: int = N_TENSORS) -> nn.Module:
    """``examples/models.py``'s ViT (the one the hint tests use) with ``n_tensors`` tensors."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "examples"))
    import models  # the examples folder is not a package; only this script needs it

    blocks, rest = divmod(n_tensors - 8, 12)  # 4 stem + 12 per block + 4 (norm, head)
    if rest:
        raise ValueError("a ViT has 8 + 12k tensors")
    return models.tiny_vit(depth=blocks, dim=8)


# -- timing ----------------------------------------------------------------------------


@dataclass
class Timing:
    """Wall-clock (``perf_counter``) and process CPU (``process_time``) seconds per call.

    Build is single-threaded Python, so on an idle machine CPU == wall; when other
    processes share the cores, wall also counts the time we were preempted, CPU not.
    """

    label: str
    times: list[float]
    cpu: list[float]
    full_gcs: int = 0  # generation-2 collections Python ran inside these calls

    @property
    def min_ms(self) -> float:
        return min(self.times) * 1e3

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1e3

    @property
    def cpu_median_ms(self) -> float:
        return statistics.median(self.cpu) * 1e3

    @property
    def cpu_min_ms(self) -> float:
        return min(self.cpu) * 1e3


def interleaved(
    jobs: list[tuple[str, Callable[[], Any]]], reps: int, warmup: int
) -> dict[str, Timing]:
    """Time every job ``reps`` times, round-robin (job 1, job 2, ..., job 1, ...).

    Round-robin rather than one job's repetitions in a row, so a burst of load from
    elsewhere on the machine lands on all jobs alike instead of on one of them.
    """
    for _ in range(warmup):
        for _, fn in jobs:
            fn()
    gc.collect()
    out = {label: Timing(label, [], []) for label, _ in jobs}
    current: list[Timing] = []

    def count_full_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2 and current:
            current[0].full_gcs += 1

    gc.callbacks.append(count_full_gc)
    try:
        for _ in range(reps):
            for label, fn in jobs:
                current[:] = [out[label]]
                c0, t0 = time.process_time(), time.perf_counter()
                fn()
                t1, c1 = time.perf_counter(), time.process_time()
                current.clear()
                out[label].times.append(t1 - t0)
                out[label].cpu.append(c1 - c0)
    finally:
        gc.callbacks.remove(count_full_gc)
    return out


@dataclass
class SpecResult:
    name: str
    groups: int
    build: Timing
    plan: Timing
    resolve: Timing
    emit: Timing
    depths: Timing | None


def bench_spec(model: nn.Module, name: str, spec: Spec, reps: int, warmup: int) -> SpecResult:
    backend = multilr.get_backend("torch")
    table = backend.extract_table(model)  # what build reads: the one walk of the model
    plan = resolve(table, spec)
    jobs: list[tuple[str, Callable[[], Any]]] = [
        ("build", lambda: multilr.build(model, spec)),
        ("plan", lambda: multilr.plan(model, spec)),
        ("resolve", lambda: resolve(table, spec)),
        ("emit", lambda: backend.emit_table(table, plan)),
    ]
    if spec.layer_decay is not None:
        names = list(table.names)
        mode = spec.layer_decay.depth
        jobs.append(("depths", lambda: depth_list(names, mode)))
    t = interleaved(jobs, reps, warmup)
    return SpecResult(name, len(plan.groups), t["build"], t["plan"], t["resolve"], t["emit"], t.get("depths"))


def _cell(t: Timing | None, cpu: bool = False) -> str:
    if t is None:
        return "-"
    return f"{t.median_ms:.1f} / {t.min_ms:.1f}" + (f" / {t.cpu_median_ms:.1f}" if cpu else "")


def _status(ms: float) -> str:
    return "PASS" if ms <= BUILD_GOAL_MS else "MISS"


def format_build(
    results: list[SpecResult], extract: Timing, infos: Timing, walk: Timing, n_tensors: int, reps: int
) -> str:
    lines = [
        f"\n## Build: {n_tensors:,} tensors, {reps} repetitions",
        "",
        "Milliseconds. build: process CPU time min / median, then wall-clock median; the other "
        "parts: wall-clock median / min. The goal is judged on the CPU minimum (the build "
        "without preemption or a full garbage collection) and, beside it, on the CPU median. "
        "'full GCs': how many of the timed builds ran a generation-2 collection of Python's "
        "cyclic GC (the whole heap: torch alone is ~166k objects).",
        f"Spec-independent: torch backend `extract_table` (what build reads) {_cell(extract, True)} ms; "
        f"`extract` (the same as `ParamInfo` records) {_cell(infos, True)} ms; "
        f"yardstick `list(model.named_parameters())` {_cell(walk, True)} ms "
        "(wall median / min / CPU median).",
        "",
        "| spec | groups | build CPU min / median, wall median | full GCs in builds "
        "| plan (= extract_table + resolve) | resolve | of which depths | emit_table "
        "| goal (CPU min) | goal (CPU median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        b = r.build
        lines.append(
            f"| {r.name} | {r.groups} | {b.cpu_min_ms:.1f} / {b.cpu_median_ms:.1f}, {b.median_ms:.1f} "
            f"| {b.full_gcs} / {len(b.times)} | {_cell(r.plan)} | {_cell(r.resolve)} | {_cell(r.depths)} "
            f"| {_cell(r.emit)} | {_status(b.cpu_min_ms)} | {_status(b.cpu_median_ms)} |"
        )
    return "\n".join(lines)


# -- where the time goes ----------------------------------------------------------------


def _private_jobs(model: nn.Module, spec: Spec) -> list[tuple[str, Callable[[], Any]]]:
    """Calls into multilr's private planner steps; empty if those internals changed shape."""
    try:
        from multilr import _plan, _tensors  # private: diagnostics only
    except ImportError:
        return []
    table = multilr.get_backend("torch").extract_table(model)
    decided = getattr(resolve(table, spec), "_decided", None)
    jobs: list[tuple[str, Callable[[], Any]]] = []
    tensors_of = getattr(_tensors, "Tensors", None)
    match = getattr(_plan, "_match_rules", None)
    merge = getattr(_plan, "_merge", None)
    if tensors_of is not None:
        jobs.append(("dedup", lambda: tensors_of(table)))
        if match is not None:
            jobs.append(("dedup+match", lambda: match(spec, table, tensors_of(table))))
    if merge is not None and decided is not None:
        jobs.append(("merge", lambda: merge(decided)))
    if spec.layer_decay is not None:
        names, mode = list(table.names), spec.layer_decay.depth
        jobs.append(("depths", lambda: depth_list(names, mode)))
    return jobs


def phase_breakdown(model: nn.Module, spec: Spec, reps: int, warmup: int) -> str:
    """Unprofiled medians of each part of one build, timed by calling the parts directly.

    The planner's steps are private functions; a step whose signature no longer fits is
    shown as n/a rather than failing the run.
    """
    from multilr.backend import attach_params, collect_params

    backend = multilr.get_backend("torch")
    table = backend.extract_table(model)
    plan = resolve(table, spec)
    by_name = dict(zip(table.names, table.tensors or [], strict=True))
    jobs: list[tuple[str, Callable[[], Any]]] = [
        ("build", lambda: multilr.build(model, spec)),
        ("extract", lambda: backend.extract_table(model)),
        ("walk", lambda: collect_params(model, nn.Module)),
        ("resolve", lambda: resolve(table, spec)),
        ("emit", lambda: backend.emit_table(table, plan)),
        ("named_parameters", lambda: list(model.named_parameters(remove_duplicate=False))),
        ("attach_params", lambda: attach_params(plan, "lr", by_name)),
        *_private_jobs(model, spec),
    ]
    runnable = []
    for label, fn in jobs:
        try:
            fn()
        except Exception as exc:  # a private step changed: report, don't fail the benchmark
            print(f"(skipping {label}: {type(exc).__name__}: {exc})")
        else:
            runnable.append((label, fn))

    def build_gc_off() -> None:
        gc.disable()
        try:
            multilr.build(model, spec)
        finally:
            gc.enable()

    runnable.append(("build, gc off", build_gc_off))
    # CPU time of the process: preemption by other processes is not charged (single-threaded
    # Python, so on an idle machine it equals wall time)
    ms: dict[str, float | None] = {k: v.cpu_median_ms for k, v in interleaved(runnable, reps, warmup).items()}
    if spec.layer_decay is None:
        ms["depths"] = 0.0

    def diff(a: str, *bs: str) -> float | None:
        vals = [ms.get(k) for k in (a, *bs)]
        if any(v is None for v in vals):
            return None
        return vals[0] - sum(vals[1:])  # type: ignore[operator,arg-type]

    total = ms["build"] or 1.0
    rows = [
        ("build (whole, measured)", ms["build"]),
        ("torch backend `extract_table` (one walk, as columns)", ms["extract"]),
        ("&nbsp;&nbsp;the walk of `_parameters` / `_modules` (`collect_params`)", ms["walk"]),
        ("&nbsp;&nbsp;shapes, flags, ids of the tensors (by difference)", diff("extract", "walk")),
        ("`resolve` (the planner, on that table)", ms["resolve"]),
        ("&nbsp;&nbsp;`Tensors` (tied-tensor dedup, name checks)", ms.get("dedup")),
        ("&nbsp;&nbsp;`_match_rules` (every rule x every tensor)", diff("dedup+match", "dedup")),
        ("&nbsp;&nbsp;`depth_list` (stacks, units, depths)", ms.get("depths")),
        ("&nbsp;&nbsp;settings: rates, decay, weight decay (by difference)",
         diff("resolve", "dedup+match", "depths", "merge")),
        ("&nbsp;&nbsp;`_merge` (groups by (lr, wd, frozen), their names)", ms.get("merge")),
        ("torch backend `emit_table`", ms["emit"]),
        ("&nbsp;&nbsp;`attach_params` (one dict and tensor list per group)", ms["attach_params"]),
        ("&nbsp;&nbsp;the rest: name -> tensor map, frozen flags (by difference)",
         diff("emit", "attach_params")),
        ("for comparison: build with Python's cyclic GC off (`gc.disable()`)", ms["build, gc off"]),
        ("for comparison: `list(model.named_parameters())`", ms["named_parameters"]),
    ]
    lines = [
        f"\n## Where the time goes: spec {HEADLINE!r}, unprofiled CPU-time medians of {reps} calls of each "
        "part (round-robin)",
        "",
        "| part | CPU ms | share of build |",
        "|---|---:|---:|",
    ]
    for label, v in rows:
        lines.append(f"| {label} | n/a | n/a |" if v is None else f"| {label} | {v:.1f} | {v / total:.0%} |")
    return "\n".join(lines)


# -- profile ---------------------------------------------------------------------------

#: Functions worth naming in the phase table: (label, file suffix, function name).
_PHASES = [
    ("build (total)", "multilr/_build.py", "build"),
    ("  TorchBackend.extract_table", "multilr_torch/_backend.py", "extract_table"),
    ("    collect_params (the walk)", "multilr/backend.py", "collect_params"),
    ("  resolve", "multilr/_plan.py", "resolve"),
    ("    Tensors (dedup)", "multilr/_tensors.py", "__init__"),
    ("    _match_rules", "multilr/_plan.py", "_match_rules"),
    ("      matching (selectors)", "multilr/_select.py", "matching"),
    ("    decay_one (layer decay)", "multilr/_layerdecay.py", "decay_one"),
    ("      depth_list", "multilr/_depth.py", "depth_list"),
    ("        find_stacks", "multilr/_stacks.py", "find_stacks"),
    ("        _units", "multilr/_depth.py", "_units"),
    ("    _rates_and_scales", "multilr/_plan.py", "_rates_and_scales"),
    ("    _no_decay_classes", "multilr/_plan.py", "_no_decay_classes"),
    ("    _merge", "multilr/_plan.py", "_merge"),
    ("      Decisions.group_names", "multilr/_decisions.py", "group_names"),
    ("  TorchBackend.emit_table", "multilr_torch/_backend.py", "emit_table"),
    ("    attach_params", "multilr/backend.py", "attach_params"),
]


def _short(path: str) -> str:
    path = path.replace(os.sep, "/")
    for marker in ("site-packages/", "/work/main/", "backends/torch/src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return path


def profile_build(model: nn.Module, spec: Spec, n: int, unprofiled_ms: float, top: int) -> str:
    prof = cProfile.Profile()
    multilr.build(model, spec)
    gc.collect()
    prof.enable()
    for _ in range(n):
        multilr.build(model, spec)
    prof.disable()
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = pstats.Stats(prof).stats
    per = 1e3 / n
    total = next(
        ct
        for (f, _, fn), (_, _, _, ct, _) in stats.items()
        if fn == "build" and f.replace(os.sep, "/").endswith("multilr/_build.py")
    )
    lines = [
        f"\n## Profile: `multilr.build`, spec {HEADLINE!r}, cProfile over {n} builds",
        "",
        f"Under the profiler one build takes {total * per:.1f} ms against {unprofiled_ms:.1f} ms "
        f"unprofiled (x{total * per / unprofiled_ms:.2f}): the profiler inflates functions with many "
        "small calls most; the table above has the real times. "
        "cum = time inside the function and what it calls; self = its own code.",
        "",
        "| phase | calls / build | cum ms / build | share | self ms / build |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, suffix, func in _PHASES:
        hits = [
            (k, v) for k, v in stats.items() if k[2] == func and k[0].replace(os.sep, "/").endswith(suffix)
        ]
        if func == "__init__":
            hits = [(k, v) for k, v in hits if k[1] < 100]  # Tensors.__init__, not another __init__
        if not hits:
            continue
        calls = sum(v[1] for _, v in hits)
        tt = sum(v[2] for _, v in hits)
        ct = sum(v[3] for _, v in hits)
        lines.append(
            f"| {label} | {calls / n:,.0f} | {ct * per:.2f} | {ct / total:.0%} | {tt * per:.2f} |"
        )
    lines += [
        "",
        f"Top {top} functions by self time:",
        "",
        "| function | calls / build | self ms / build | cum ms / build |",
        "|---|---:|---:|---:|",
    ]
    ranked = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    for (f, line, fn), (_, nc, tt, ct, _) in ranked:
        where = f"{_short(f)}:{line}({fn})" if line else fn
        lines.append(f"| `{where}` | {nc / n:,.0f} | {tt * per:.2f} | {ct * per:.2f} |")
    return "\n".join(lines)


# -- scale -----------------------------------------------------------------------------


class _ScaleBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(4, 4))


class ThousandBlocks(nn.Module):
    """The scale test's model (``backends/torch/tests/test_scale.py``): 2,006 tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.blocks = nn.Sequential(*(_ScaleBlock() for _ in range(1000)))
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)


def run_scale(reps: int, warmup: int) -> str:
    """Build time and traced memory for the scale test's two models (issue 6, part 5)."""
    import tracemalloc

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
    from models import llama  # examples/models.py: LLaMA-7B's shapes on the meta device

    cases = [
        (
            "1,000 blocks (CPU)",
            ThousandBlocks(),
            Spec(lr=1e-3, weight_decay=0.05, no_decay=("bias", "norm"),
                 rules=(Rule(Prefix("stem"), frozen=True, name="stem"),), layer_decay=LayerDecay(0.99)),
        ),
        (
            "LLaMA-7B shapes (meta)",
            llama(),
            Spec(lr=3e-4, weight_decay=0.1, no_decay=("bias", "norm"), layer_decay=LayerDecay(0.8)),
        ),
    ]
    lines = [
        f"\n## Scale: the scale test's models, {reps} repetitions",
        "",
        "| model | tensors | parameters | groups | build CPU min / median (ms) | peak traced memory |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, model, spec in cases:
        groups = multilr.build(model, spec)
        tracemalloc.start()
        multilr.build(model, spec)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        t = interleaved([("build", lambda m=model, s=spec: multilr.build(m, s))], reps, warmup)["build"]
        params = list(model.parameters())
        lines.append(
            f"| {label} | {len(params):,} | {sum(p.numel() for p in params):.3g} | {len(groups):,} "
            f"| {t.cpu_min_ms:.1f} / {t.cpu_median_ms:.1f} | {peak / 1e6:.2f} MB |"
        )
    return "\n".join(lines)


# -- machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _load() -> str:
    try:
        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def machine() -> str:
    return (
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {os.cpu_count()} CPUs ({_cpu_model()}); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"Python {platform.python_version()}; {platform.system()} {platform.release()}; {_load()}"
    )


# -- main ------------------------------------------------------------------------------


def run_build(quick: bool, reps: int | None, profile: bool | None, top: int) -> tuple[list[SpecResult], str]:
    reps = reps or (5 if quick else 30)
    warmup = 1 if quick else 3
    model = Deep(N_TENSORS)
    n_tensors = sum(1 for _ in model.parameters())
    backend = multilr.get_backend("torch")
    base = interleaved(
        [
            ("extract_table", lambda: backend.extract_table(model)),
            ("extract", lambda: backend.extract(model)),
            ("walk", lambda: list(model.named_parameters())),
        ],
        reps,
        warmup,
    )
    results = [bench_spec(model, name, spec, reps, warmup) for name, spec in specs(model).items()]
    transformer = vit(N_TENSORS)
    results += [bench_spec(transformer, n, spec, reps, warmup) for n, spec in vit_specs(transformer).items()]
    text = format_build(results, base["extract_table"], base["extract"], base["walk"], n_tensors, reps)
    print(text, flush=True)
    headline = next(r for r in results if r.name == HEADLINE)
    if profile or (profile is None and headline.build.cpu_min_ms > BUILD_GOAL_MS):
        breakdown = phase_breakdown(model, specs(model)[HEADLINE], reps, warmup)
        print(breakdown, flush=True)
        text += "\n" + breakdown
        n_prof = 5 if quick else 20
        prof = profile_build(model, specs(model)[HEADLINE], n_prof, headline.build.median_ms, top)
        print(prof, flush=True)
        text += "\n" + prof
    return results, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, small step model (smoke run)")
    parser.add_argument("--reps", type=int, default=None, help="build repetitions (default 30, quick 5)")
    parser.add_argument(
        "--rounds", type=int, default=None, help="step rounds (default 30, the judged cell 100; quick 5)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--skip-step", action="store_true", help="build benchmark only")
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="cProfile the headline build (default: only when it misses the goal)",
    )
    parser.add_argument("--top", type=int, default=15, help="functions in the profile's top list")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    print(f"# multilr benchmarks{' (quick)' if args.quick else ''}\n")
    print(f"Command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"Machine: {machine()}", flush=True)
    t0 = time.perf_counter()

    build_results, _ = run_build(args.quick, args.reps, args.profile, args.top)
    print(run_scale(args.reps or (5 if args.quick else 30), 1 if args.quick else 3), flush=True)
    rows = []
    for r in build_results:
        b = r.build
        status = f"{_status(b.cpu_min_ms)} (min), {_status(b.cpu_median_ms)} (median)"
        what = f"build, {N_TENSORS:,} tensors, spec {r.name!r} ({r.groups} group{'s' * (r.groups != 1)})"
        measured = (
            f"CPU min {b.cpu_min_ms:.1f} ms, median {b.cpu_median_ms:.1f} (wall median {b.median_ms:.1f})"
        )
        rows.append((what, measured, f"<= {BUILD_GOAL_MS:g} ms", status))

    if not args.skip_step:
        import bench_step  # the sibling script; its folder is on sys.path when run as a script

        step_results = bench_step.run_step(args.quick, args.rounds, args.threads)
        rows += bench_step.summary_rows(step_results, args.quick)

    print("\n## Summary\n")
    print("| measurement | measured | goal | status |")
    print("|---|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nTotal {time.perf_counter() - t0:.0f} s; {_load()} at the end.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
