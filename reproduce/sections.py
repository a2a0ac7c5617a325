"""The sections of the ``dlsys reproduce`` report, in report order.

Each section calls the public Python API of one area (never its internals), writes its
figures and data into ``ctx.out`` and returns Markdown whose every number comes from the run.
Imports of the areas happen inside the sections, so a broken area fails its own section only.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path

from dlsys.reproduce.replay_sections import REPLAY_SECTIONS
from dlsys.reproduce.section import Context, Section, SectionResult, markdown_table
from dlsys.reproduce.training_sections import TRAINING_SECTIONS


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def environment(ctx: Context) -> SectionResult:
    """Machine, threads, versions, compiled backends, data used and each section's duration."""
    from dlsys.kernels import describe_backends
    from dlsys.reproduce.environment import collect

    info = collect()
    b = info["backends"]
    mem = _memory_gib()
    datasets = sorted(
        {
            str(o.result.data["dataset"])
            for o in ctx.previous
            if o.result is not None and "dataset" in o.result.data
        }
    )
    stand_in = [d for d in datasets if not d.startswith(("mnist", "fashion-mnist"))]
    rows = [
        ("machine", f"{platform.machine()}, {_cpu_model()}"),
        ("cores", info["cpu_count"]),
        ("memory", f"{mem:.1f} GiB" if mem is not None else "unknown"),
        ("threads", f"torch {info['threads']['torch']}, dlsys OpenMP {info['threads']['openmp']}"),
        ("python", info["python"]),
        ("dlsys", info["dlsys"]),
        ("torch", info["torch"]),
        ("numpy / simpy", f"{info['numpy']} / {info['simpy']}"),
        *describe_backends(b),
        ("run size", ctx.size),
        ("data", ", ".join(datasets) if datasets else "no training data used"),
    ]
    md = [markdown_table(rows, ["", ""]), ""]
    if stand_in:
        md += [
            f"> **Stand-in data:** the training results above ran on {', '.join(stand_in)}, "
            "built-in data that replaces MNIST/FashionMNIST (scikit-learn's 8x8 digits resized "
            "to 28x28, or generated data). Their accuracies are not the homework's MNIST "
            "figures; run `dlsys reproduce --full --data ROOT` with the IDX files for those.",
            "",
        ]
    durations = [
        (o.section.name, f"{o.seconds:.1f}", "ok" if o.ok else "failed") for o in ctx.previous
    ]
    if durations:
        md += [
            "Duration of each section:",
            "",
            markdown_table(durations, ["section", "seconds", "status"]),
        ]
    data = {
        "info": info,
        "datasets": datasets,
        "stand_in_data": stand_in,
        "durations_s": {o.section.name: o.seconds for o in ctx.previous},
    }
    return SectionResult("\n".join(md), data)


def _fmt(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}"


def simulator(ctx: Context) -> SectionResult:
    """Parameter-server staleness: the homework table, an 8-learner run, a protocol comparison."""
    from dlsys.simulator.studies import (
        homework_study,
        protocol_study,
        protocol_table,
        staleness_study,
    )

    hw = homework_study(ctx.out)
    st = staleness_study(ctx.out, n=8, updates=ctx.pick(2_000, 50_000, 200_000), seed=ctx.seed)
    pr = protocol_study(ctx.out, n=8, updates=ctx.pick(500, 5_000, 20_000), seed=ctx.seed)
    worst = max(st["per_learner"], key=lambda p: abs(p["mean"] - p["theory"]))
    md = [
        "### Two learners, the homework case",
        "",
        "L1 finishes gradients at t = 1, 2, 3, 4 s and L2 at t = 2.5, 5 s under asynchronous "
        "SGD; staleness is the number of PS updates between a gradient's read and its "
        "application.",
        "",
        "```text",
        hw["table"].rstrip(),
        "```",
        "",
        f"Staleness of g[L1,1..4], g[L2,1..2]: **{', '.join(map(str, hw['staleness']))}** "
        "(the worked answer gives 3 for g[L2,2]; the trace above shows which updates "
        "intervened between its read and its application).",
        "",
        f"![timeline]({ctx.rel(ctx.out / 'timeline.png')})",
        "",
        f"### Async SGD with {st['n']} exponential learners",
        "",
        f"{st['updates']:,} updates, rates 1, 1.5, ..., {1 + 0.5 * (st['n'] - 1):g} per second. "
        f"Mean staleness {_fmt(st['mean'])} against the steady-state theory n - 1 = "
        f"{st['mean_theory']:g}; learner i's staleness is geometric with p_i = l_i / L, and "
        f"the largest gap between a learner's mean and (L - l_i) / l_i is {worst['learner']}'s "
        f"{_fmt(worst['mean'])} vs {_fmt(worst['theory'])}. Total variation distance between "
        f"the observed histogram and the theoretical mixture: {_fmt(st['total_variation'], 3)}.",
        "",
        f"![staleness histogram]({ctx.rel(ctx.out / 'staleness.png')})",
        "",
        f"### Protocols on {pr['n']} identical Exp({pr['rate']:g}) learners",
        "",
        f"{pr['updates']:,} updates each; theory columns are Dutta et al. (2018) and the "
        "softsync/k-batch closed forms where they exist.",
        "",
        protocol_table(pr["rows"]).rstrip(),
        "",
        f"![protocols]({ctx.rel(ctx.out / 'protocols.png')})",
    ]
    data = {
        "homework_staleness": hw["staleness"],
        "async": {k: st[k] for k in ("n", "updates", "mean", "mean_theory", "total_variation")},
        "protocols": pr["rows"],
    }
    return SectionResult("\n".join(md), data)


#: The 6x6 image X of the convolution problem (seed 002, Q4.1).
GAUSSIAN_EXAMPLE_X = (
    (-15, -10, -13, 12, 6, 2),
    (8, 12, 10, -1, 3, -15),
    (8, 10, 11, -14, -14, 5),
    (-4, 4, -11, -6, 13, 14),
    (-13, 3, 8, -3, -2, 15),
    (14, 12, -2, -9, -11, 0),
)
#: The 3x3 Gaussian filter of the same problem, to be divided by 16.
GAUSSIAN_FILTER_16 = ((1, 2, 1), (2, 4, 2), (1, 2, 1))


def _shape(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def costs(ctx: Context) -> SectionResult:
    """Architecture costs: VGG19, Inception naive vs reduced, GoogLeNet, small Inception,
    and the convolution-arithmetic answers (one of them computed by dlsys's conv kernel)."""
    import torch

    from dlsys.analytics import conv_answers, cost, inception_comparison, vgg19_table
    from dlsys.common.io import atomic_write_text, write_json
    from dlsys.kernels import conv2d

    vgg = vgg19_table()
    atomic_write_text(ctx.out / "vgg19.csv", vgg.to_csv())
    write_json(ctx.out / "vgg19.json", vgg.as_dict())
    t = vgg.totals
    inc = inception_comparison()
    write_json(ctx.out / "inception.json", inc.as_dict())
    goog = cost("googlenet")
    small = cost("small_inception")
    write_json(ctx.out / "googlenet.json", goog.as_dict())
    write_json(ctx.out / "small_inception.json", small.as_dict())

    answers = conv_answers()
    out_hw, pad, one_filter = answers["output_6x4"], answers["keep_6x4"], answers["one_4x4_filter"]
    x = torch.tensor(GAUSSIAN_EXAMPLE_X, dtype=torch.float64).reshape(1, 1, 6, 6)
    w = torch.tensor(GAUSSIAN_FILTER_16, dtype=torch.float64).reshape(1, 1, 3, 3) / 16
    y = conv2d(x, w)  # dlsys's own kernel: no padding, stride 1 -> 4x4
    j = float(y[0, 0, 2, 1])  # Y = [[a b c d] [e f g h] [i j k l] [m n o p]]: row 3, column 2
    a_, b_ = inc.a.totals, inc.b.totals
    totals = [
        ("parameters", t["params"]),
        ("  of which weights", t["weights"]),
        ("  of which biases", t["biases"]),
        ("activations (input + every conv, pool, FC output)", t["activations"]),
        ("multiply-accumulates", t["macs"]),
        ("FLOPs (2 x MAC)", t["flops"]),
    ]
    md = [
        "### VGG19 at 3x224x224",
        "",
        "Counting convention: " + vgg.convention.describe(),
        "",
        vgg.to_markdown().rstrip(),
        "",
        markdown_table([(k, f"{v:,}") for k, v in totals], ["total", "exact"]),
        "",
        f"The activation total is {t['activations']:,} exactly; the worked answer's "
        "16,484,192 is the sum of rounded table entries.",
        "",
        "### Inception module at 32x32x256: naive vs dimension reduction",
        "",
        "```text",
        inc.to_text().rstrip(),
        "```",
        "",
        f"Naive: {a_['macs']:,} MACs, output {_shape(inc.a.layers[-1].output_shape)}; "
        f"reduced: {b_['macs']:,} MACs, output {_shape(inc.b.layers[-1].output_shape)}; the 1x1 "
        f"reductions save {100 * (1 - b_['macs'] / a_['macs']):.2f}% of the multiply-"
        "accumulates. (The worked answer's 391.6M for the reduced module lets the 5x5 reduce "
        "read 128 input channels instead of 256.)",
        "",
        "### GoogLeNet and the small Inception",
        "",
        markdown_table(
            [
                (
                    r.model,
                    f"{r.totals['params']:,}",
                    f"{r.totals['macs']:,}",
                    f"{r.totals['activations']:,}",
                )
                for r in (goog, small)
            ],
            ["model", "parameters", "MACs", "activations"],
        ),
        "",
        "GoogLeNet at 3x224x224 with the paper's 5x5 branches (no auxiliary classifiers); the "
        "small Inception is Zhang et al. (2017), Figure 3, whose Table 1 gives 1,649,402 "
        "parameters (its second Downsample module has 96 filters).",
        "",
        "### Convolution arithmetic",
        "",
        markdown_table(
            [
                ("6x4 input, 2x2 kernel, stride 2, no padding: output size", _shape(out_hw)),
                (
                    "padding that keeps 6x4 with that kernel and stride",
                    f"top = bottom = {pad[0][0]}, left = right = {pad[1][0]}",
                ),
                (
                    "one 4x4 filter, stride 2, on a 22x22 grey image: parameters",
                    f"{one_filter.totals['params']} ({one_filter.totals['weights']} weights + "
                    f"{one_filter.totals['biases']} bias); output "
                    f"{_shape(one_filter.layers[-1].output_shape)}",
                ),
                ("value j of the 6x6 example * Gaussian filter / 16", f"{j:g}"),
            ],
            ["question", "answer"],
        ),
        "",
        "The whole output Y of the Gaussian example, computed by `dlsys.kernels.conv2d`:",
        "",
        "```text",
        "\n".join(" ".join(f"{v:8.4f}" for v in row) for row in y[0, 0].tolist()),
        "```",
    ]
    data = {
        "vgg19": t,
        "inception": inc.as_dict(),
        "googlenet": goog.totals,
        "small_inception": small.totals,
        "conv_arithmetic": {
            "output_size_6x4_k2_s2": list(out_hw),
            "keep_padding_6x4_k2_s2": [list(p) for p in pad],
            "one_4x4_filter_params": one_filter.totals["params"],
            "gaussian_j": j,
            "gaussian_y": y[0, 0].tolist(),
        },
    }
    return SectionResult("\n".join(md), data)


def evaluation(ctx: Context) -> SectionResult:
    """Bias-variance of polynomial fits; ROC/PR/PRG curves of AdaBoost vs logistic regression."""
    from dlsys.analytics.biasvar.study import run_biasvar_study
    from dlsys.analytics.biasvar.study import summary_dict as biasvar_summary
    from dlsys.analytics.curves.study import run_curves_study
    from dlsys.analytics.curves.study import summary_dict as curves_summary

    bv_dir = ctx.out / "biasvar"
    cv_dir = ctx.out / "curves"
    bv_dir.mkdir()
    cv_dir.mkdir()
    bv = run_biasvar_study(
        bv_dir,
        degrees=ctx.pick("1,3,10", "1-15", "1-15"),
        n_datasets=ctx.pick(10, 100, 100),
        seed=ctx.seed,
    )
    cv = run_curves_study(cv_dir, seed=ctx.seed)
    rows = bv.table()
    first, last = rows[0], rows[-1]
    holds = sum(bool(r["identity_holds"]) for r in rows)
    ls, rg = bv.order10, bv.order10_ridge
    best_model = max(cv.models, key=lambda m: m.auprg)
    gap = max(m.aupr_ap - m.aupr_interpolated for m in cv.models)
    md = [
        "### Bias-variance of polynomial regression",
        "",
        bv.markdown().rstrip(),
        "",
        f"Reading: squared bias falls from {first['bias2']:.4f} at degree {first['degree']} to "
        f"{last['bias2']:.4f} at degree {last['degree']} while the variance rises from "
        f"{first['variance']:.4f} to {last['variance']:.4f}; the test error is lowest at degree "
        f"{bv.best_degree}. The identity MSE = bias^2 + variance + noise holds within sampling "
        f"error (residual within its standard error band) for {holds} of {len(rows)} degrees. "
        f"For the order-{bv.ridge_degree} polynomial, the L2 penalty (alpha = "
        f"{bv.ridge_alpha:g}) changes the variance from {ls.variance:.4f} to {rg.variance:.4f} "
        f"and the squared bias from {ls.bias2:.4f} to {rg.bias2:.4f}, for a test MSE of "
        f"{rg.mse:.4f} against {ls.mse:.4f}. Unlike mlxtend's decomposition, the noise "
        f"({bv.noise_variance:g}) is reported on its own rather than folded into the bias.",
        "",
        f"![bias-variance trade-off]({ctx.rel(bv_dir / 'tradeoff.png')})",
        f"![polynomial fits]({ctx.rel(bv_dir / 'fits.png')})",
        "",
        "### ROC, PR and PRG curves: AdaBoost vs logistic regression",
        "",
        cv.markdown().rstrip(),
        "",
        f"Reading: by AUPRG the better model here is {best_model.model} "
        f"({best_model.auprg:.4f}). Average precision (a step function) and the Davis & "
        f"Goadrich interpolated area differ by at most {gap:.2g} on this data; straight lines "
        "between PR points, as in the worked answers, would over-estimate the area. Precision "
        "and recall gain use Flach & Kull's (prec - pi) / ((1 - pi) prec), and AUPRG is taken "
        "over recall gain >= 0 with the crossing points inserted.",
        "",
        f"![ROC, PR and PRG curves]({ctx.rel(cv_dir / 'curves.png')})",
    ]
    data = {"biasvar": biasvar_summary(bv), "curves": curves_summary(cv)}
    return SectionResult("\n".join(md), data)


def kernels(ctx: Context) -> SectionResult:
    """dlsys's kernels against PyTorch on this machine: agreement, then the benchmark table."""
    import torch
    import torch.nn.functional as F

    from dlsys.common.io import atomic_write_text, write_json
    from dlsys.kernels import backends, conv2d, flooding_cross_entropy
    from dlsys.kernels.bench import format_table, plot, run

    # Agreement on the benchmark's layer-2 shape (fewer images) before any timing.
    g = torch.Generator().manual_seed(ctx.seed)
    x = torch.randn(8, 16, 14, 14, generator=g, dtype=torch.float64)
    w = torch.randn(32, 16, 5, 5, generator=g, dtype=torch.float64)
    conv_err = float((conv2d(x, w, padding=2) - F.conv2d(x, w, padding=2)).abs().max())
    z = torch.randn(256, 10, generator=g, dtype=torch.float64) * 5
    t = torch.randint(0, 10, (256,), generator=g)
    b = 0.1
    ce_err = abs(
        float(flooding_cross_entropy(z, t, b=b)) - float((F.cross_entropy(z, t) - b).abs() + b)
    )
    result = run(quick=ctx.size != "full", threads=2)
    table = format_table(result)
    atomic_write_text(ctx.out / "kernels_benchmark.txt", table + "\n")
    write_json(ctx.out / "kernels_benchmark.json", result)
    plot(result, ctx.out / "kernels_benchmark.png")
    rows = result["rows"]
    missed = [r["name"] for r in rows if r["target"] == r["target"] and not r["met"]]
    met = [r["name"] for r in rows if r["target"] == r["target"] and r["met"]]
    step = next((r for r in rows if r["name"].startswith("train step")), None)
    be = backends()
    md = [
        f"Agreement with PyTorch in float64: conv2d (8x16x14x14, 5x5, pad 2) max abs difference "
        f"{conv_err:.1e}; flooding cross-entropy (256x10, b = {b}) {ce_err:.1e}.",
        "",
        f"Benchmark (`python benchmarks/kernels.py`; {result['reps']} interleaved repetitions, "
        "medians; ratio = dlsys time / torch time, so below 1 means dlsys is faster):",
        "",
        "```text",
        table,
        "```",
        "",
        f"Reading: {len(met)} of {len(met) + len(missed)} targets met on this run"
        + (f"; missed: {', '.join(missed)}." if missed else ".")
        + (
            f" One training step of the flooding CNN takes {step['dlsys_total_ms']:.1f} ms with "
            f"dlsys kernels against {step['torch_total_ms']:.1f} ms with torch's "
            f"({step['ratio']:.2f}x)."
            if step
            else ""
        )
        + " The machine is shared: ratios from one run move by several tens of percent with "
        "the load average shown in the table's last line."
        + (
            ""
            if be["cuda_available"]
            else " CUDA kernels are compiled into this build but no GPU is present, so only the "
            "CPU kernels are timed."
        ),
        "",
        f"![kernel benchmark]({ctx.rel(ctx.out / 'kernels_benchmark.png')})",
    ]
    data = {"conv_max_abs_diff": conv_err, "flood_ce_abs_diff": ce_err, "benchmark": result}
    return SectionResult("\n".join(md), data)


SECTIONS: tuple[Section, ...] = (
    Section("simulator", "Parameter-server staleness", simulator),
    Section("costs", "Architecture costs", costs),
    Section("evaluation", "Bias-variance and classifier curves", evaluation),
    *TRAINING_SECTIONS,
    *REPLAY_SECTIONS,
    Section("kernels", "Kernels: dlsys vs PyTorch", kernels),
    Section("environment", "Environment", environment),
)
