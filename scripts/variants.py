"""The paper's open questions as models, measured: writes docs/variants.md and its figures.

    python scripts/variants.py [--seeds 10] [--small-seeds 40] [--quick] [--part all|normaliser]

Every variant runs on the same grid, seeds and key as the paper's model (the base), in this one process:
- a trained head (``Config(train_head=True)``) on the paper's grid: phase diagrams, boundaries, and which
  route fits each noisy label (the attention's or the head's);
- H heads (``Config(heads=H)``) from a random start, H ∈ {1, 2, 4, 8}: regime counts and the heads'
  specialisation statistic on a subgrid;
- a random start for one head (``Config(query_init_std=s)``): regime counts against s;
- sigmoid attention (``Config(normaliser="sigmoid")``) on the paper's grid beside the base;
- timings of the trained head and of 4 heads against the base on the paper grid (compile included).
``--part normaliser`` runs only the base and sigmoid attention and rewrites only that section of the page.
``--quick`` runs a 6 × 6 subgrid with 2 seeds (a smoke test; it writes to a temporary directory).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jaxbo

jaxbo.use_cpu_cores()  # before anything starts JAX: one CPU device per core

import numpy as np  # noqa: E402
from _bench import machine, write_section  # noqa: E402

from jaxbo import analysis, plot  # noqa: E402
from jaxbo.data import ROLE_NAMES  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_GRID = {"d": [250 + 125 * i for i in range(39)], "signal_norm": [5 + 2.5 * i for i in range(39)]}
#: The random start's scale: at d = 2000 an initial logit x·p has spread σ√d·s ≈ 0.9, the scale of the
#: logit gaps the paper's analysis tracks; s = 0 is the paper's p = 0.
START = 0.02
HEADS = (1, 2, 4, 8)
STARTS = (0.0, 0.005, 0.01, 0.02, 0.05)
#: Deeper encoders on a CPU-sized grid (the encoder has no reduced form: its cost grows with d² and L).
DEPTHS = (1, 2, 3)
DEPTH_GRID = {"d": [50, 100, 200], "signal_norm": [4.0, 8.0, 16.0, 32.0, 64.0, 128.0]}
DEPTH_CONFIG = jaxbo.Config(model="encoder", mlp_width=128)


def shape_of(grid: dict, seeds: int, quick: bool) -> str:
    shape = f"{len(grid['d'])} d × {len(grid['signal_norm'])} ‖μ‖ × {seeds} seeds"
    return shape if quick else f"the paper's grid, {shape}"


def subgrid(grid: dict, every: int) -> dict:
    return {name: values[::every] for name, values in grid.items()}


def timed_sweep(grid: dict, config: jaxbo.Config, seeds: int) -> tuple[jaxbo.SweepResult, float]:
    started = time.perf_counter()
    result = jaxbo.sweep(grid, seeds=seeds, config=config, key=0, progress=False)
    return result, time.perf_counter() - started


def counts(result: jaxbo.SweepResult) -> str:
    """Cells per majority regime: benign / harmful / not overfitting / tied."""
    found = result.regime_counts()
    return " / ".join(str(found[name]) for name in ("benign", "harmful", "not overfitting", "tied"))


def wilson_low(successes: np.ndarray, trials: int, z: float = 1.96) -> np.ndarray:
    """The lower end of the 95 % Wilson interval of a binomial proportion (elementwise)."""
    share = successes / trials
    centre = share + z * z / (2 * trials)
    spread = z * np.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    return (centre - spread) / (1 + z * z / trials)


def decided(result: jaxbo.SweepResult) -> str:
    """Cells whose majority regime is decided at 95 %, per regime (benign / harmful / not): the majority's share
    of seeds has a Wilson lower bound above ½, so more seeds would keep it the majority (a 3-of-5 cell is not)."""
    fractions = result.regime_fractions()
    majority = result.majority_regime()
    top = np.rint(np.take_along_axis(fractions, majority[..., None], -1)[..., 0] * result.seeds)
    sure = (wilson_low(top, result.seeds) > 0.5) & ~result.tied()
    return " / ".join(str(int(np.sum(sure & (majority == code)))) for code in range(3))


def run_shares(result: jaxbo.SweepResult) -> str:
    """Runs per regime as fractions of all runs, each ± its binomial standard error."""
    codes, total = result.regime.ravel(), result.regime.size
    parts = []
    for code in range(3):
        share = float(np.mean(codes == code))
        parts.append(f"{share:.2f} ± {np.sqrt(share * (1 - share) / total):.2f}")
    return " / ".join(parts)


def fits_text(result: jaxbo.SweepResult) -> str:
    fits = analysis.fit_boundaries(result)
    parts = []
    for kind in ("harmful", "not_overfitting"):
        fit = fits[kind]
        if fit["reason"]:
            parts.append(f"{kind.replace('_', ' ')}: no fit ({fit['reason']})")
        else:
            low, high = fit["slope_ci"]
            parts.append(f"{kind.replace('_', ' ')}: d^{fit['slope']:.2f} [{low:.2f}, {high:.2f}]")
    return "; ".join(parts)


def specialisation(result: jaxbo.SweepResult) -> tuple[float, float]:
    """Mean over cells and seeds of the spread across heads (max − min) of the attention on the weak opposite
    token over noisy samples, and of the attention on the relevant token over clean samples."""
    values = result.final["head_attention"]  # (*grid, seeds, H, 2, 4)
    opposite = values[..., 1, ROLE_NAMES.index("weak_opposite")]
    relevant = values[..., 0, ROLE_NAMES.index("relevant")]
    spread = [float(np.nanmean(np.nanmax(v, -1) - np.nanmin(v, -1))) for v in (opposite, relevant)]
    return spread[0], spread[1]


def save(figure, out: str, name: str) -> str:
    path = os.path.join(out, name)
    figure.savefig(path, dpi=110)
    return name


def trained_head_section(grid, seeds, out, base, base_seconds) -> tuple[list[str], list[str]]:
    config = jaxbo.Config(train_head=True)
    result, seconds = timed_sweep(grid, config, seeds)
    four, four_seconds = timed_sweep(grid, jaxbo.Config(heads=4), seeds)
    figure = plot.phase_diagram(result, metrics=("fit_by_attention", "head_noise_share", "regime"))
    name = save(figure, out, "variants_trained_head.png")
    base_figure = save(plot.phase_diagram(base), out, "variants_base.png")
    rows = [
        f"| {label} | {counts(model)} | {decided(model)} | {fits_text(model)} | {routes(model)} |"
        for label, model in (("base (ν fixed)", base), ("trained head", result))
    ]
    timing = [
        f"| base | {base.metadata['engine']} | {base_seconds:.1f} s | {base.metadata['compile_s']:.1f} s | 1× |",
        f"| trained head | {result.metadata['engine']} | {seconds:.1f} s | {result.metadata['compile_s']:.1f} s | "
        f"{seconds / base_seconds:.2f}× (target ≤ 1.5×) |",
        f"| 4 heads (from p = 0) | {four.metadata['engine']} | {four_seconds:.1f} s | "
        f"{four.metadata['compile_s']:.1f} s | {four_seconds / base_seconds:.2f}× (target ≤ 4×) |",
    ]
    lines = [
        "| model | cells: benign / harmful / not / tied | of them decided at 95 % | boundaries (fit_boundaries) | "
        "noisy fit | weak opposite most attended | relevant most attended | margin from the head's noise part |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"![base]({base_figure})",
        "",
        f"![trained head]({name})",
    ]
    return lines, timing


def normaliser_section(grid, seeds, out, base, base_seconds) -> str:
    """Sigmoid attention beside the base on ``grid``: regime counts, decided cells, boundaries, cost, figure."""
    result, seconds = timed_sweep(grid, jaxbo.Config(normaliser="sigmoid"), seeds)
    figure = save(plot.phase_diagram(result, theory=True), out, "variants_sigmoid.png")
    rows = [
        f"| {label} | {model.metadata['engine']} | {counts(model)} | {decided(model)} | {fits_text(model)} "
        f"| {np.nanmean(model.final['test_accuracy']):.3f} | {wall:.1f} s |"
        for label, model, wall in (("softmax (the paper)", base, base_seconds), ("sigmoid", result, seconds))
    ]
    return "\n".join(
        [
            "| φ | engine | cells: benign / harmful / not / tied | of them decided at 95 % | boundaries "
            "(fit_boundaries) | mean test accuracy | wall (compile included) |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"![sigmoid attention]({figure})",
        ]
    )


def replace_section(path: str, text: str) -> None:
    """Put ``text`` between the normaliser section's markers of the page at ``path``."""
    with open(path) as handle:
        page = handle.read()
    start, end = "<!-- variants_normaliser:start -->", "<!-- variants_normaliser:end -->"
    if start not in page:
        raise SystemExit(f"{path} has no {start} section: run scripts/variants.py without --part first")
    before, rest = page.split(start, 1)
    with open(path, "w") as handle:
        handle.write(before + start + "\n" + text + "\n" + end + rest.split(end, 1)[1])


def routes(result: jaxbo.SweepResult) -> str:
    """Mean over runs of the fraction of noisy samples fitted, in all and with each token most attended, and
    the median over runs of ``head_noise_share`` (which part of the model supplies a fitted noisy margin)."""
    fits = [float(np.nanmean(result.final[key])) for key in ("noisy_fit", "fit_by_attention", "fit_by_head")]
    shares = result.final["head_noise_share"]
    share = f"{float(np.nanmedian(shares)):.2f}" if np.isfinite(shares).any() else "—"
    return " | ".join([*(f"{value:.3f}" for value in fits), share])


def typical_run(result: jaxbo.SweepResult) -> tuple[np.ndarray, str]:
    """The (H, 2, 4) head attention of the run whose heads' spread on the noisy samples' weak opposite token
    is the median over runs (heads are exchangeable, so averaging runs would hide any specialisation), and
    where it is."""
    values = result.final["head_attention"]
    flat = values.reshape(-1, *values.shape[-3:])
    spread = np.nanmax(flat[:, :, 1, 2], -1) - np.nanmin(flat[:, :, 1, 2], -1)
    index = int(np.argsort(spread)[len(spread) // 2])
    position = np.unravel_index(index, values.shape[:-3])
    where = ", ".join(f"{name} = {result.coords[name][i]:g}" for name, i in zip(result.dims, position, strict=True))
    return flat[index], where


def heads_section(grid, seeds, out) -> list[str]:
    lines = [
        "| H | cells: benign / harmful / not / tied | of them decided at 95 % | runs benign / harmful / not | "
        "boundaries (fit_boundaries) | spread of 𝒩's weak-opposite attention across heads | spread of 𝒞's "
        "relevant attention across heads |",
        "|---|---|---|---|---|---|---|",
    ]
    for count in HEADS:
        result, _ = timed_sweep(grid, jaxbo.Config(heads=count, query_init_std=START), seeds)
        opposite, relevant = specialisation(result)
        lines.append(
            f"| {count} | {counts(result)} | {decided(result)} | {run_shares(result)} | {fits_text(result)} | "
            f"{opposite:.3f} | {relevant:.3f} |"
        )
        if count == 4:
            diagram = save(plot.phase_diagram(result, theory=True), out, "variants_heads_phase.png")
    attention, where = typical_run(result)
    title = f"{HEADS[-1]} heads, random start s = {START}: the median run by spread ({where})"
    figure = plot.head_attention(attention, title=title)
    lines += ["", f"![4 heads]({diagram})", "", f"![heads]({save(figure, out, 'variants_heads.png')})"]
    return lines


def start_section(grid, seeds, out) -> list[str]:
    lines = [
        "| s | cells: benign / harmful / not / tied | of them decided at 95 % | runs benign / harmful / not | "
        "boundaries (fit_boundaries) |",
        "|---|---|---|---|---|",
    ]
    diagrams = []
    for scale in STARTS:
        result, _ = timed_sweep(grid, jaxbo.Config(query_init_std=scale), seeds)
        lines.append(
            f"| {scale:g} | {counts(result)} | {decided(result)} | {run_shares(result)} | {fits_text(result)} |"
        )
        if scale in (0.0, START):
            name = f"variants_start_{scale:g}.png"
            diagrams.append(f"![s = {scale:g}]({save(plot.phase_diagram(result, theory=True), out, name)})")
    return [*lines, "", *diagrams]


def depth_section(grid, seeds) -> list[str]:
    lines = [
        "| L | cells: benign / harmful / not / tied | boundaries (fit_boundaries) | mean train acc | mean test acc |"
        " wall (compile) |",
        "|---|---|---|---|---|---|",
    ]
    for layers in DEPTHS:
        result, seconds = timed_sweep(grid, DEPTH_CONFIG.replace(layers=layers), seeds)
        train, test = (float(np.nanmean(result.final[name])) for name in ("train_accuracy", "test_accuracy"))
        lines.append(
            f"| {layers} | {counts(result)} | {fits_text(result)} | {train:.3f} | {test:.3f} | "
            f"{seconds:.1f} s ({result.metadata['compile_s']:.1f} s) |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="seeds per cell on the paper grid")
    parser.add_argument(
        "--small-seeds", type=int, default=40, help="seeds per cell of the heads' and random starts' subgrid"
    )
    parser.add_argument("--quick", action="store_true", help="6 × 6 subgrid, 2 seeds, temporary output")
    parser.add_argument("--part", choices=("all", "normaliser"), default="all", help="normaliser: its section only")
    args = parser.parse_args()
    where = machine()  # now: the commit of the code this process imported, not of the tree when it ends
    grid = subgrid(PAPER_GRID, 7) if args.quick else PAPER_GRID
    seeds = 2 if args.quick else args.seeds
    small = grid if args.quick else subgrid(PAPER_GRID, 4)
    small_seeds = 2 if args.quick else args.small_seeds
    out = tempfile.mkdtemp() if args.quick else os.path.join(ROOT, "docs")
    base, base_seconds = timed_sweep(grid, jaxbo.Config(), seeds)
    normaliser_text = NORMALISER.format(shape=shape_of(grid, seeds, args.quick), machine=where)
    normaliser_text += normaliser_section(grid, seeds, out, base, base_seconds)
    if args.part == "normaliser":
        page = os.path.join(out, "variants.md")
        if args.quick:
            print(normaliser_text)
            return
        replace_section(page, normaliser_text)
        print(normaliser_text)
        return
    head_lines, timing = trained_head_section(grid, seeds, out, base, base_seconds)
    heads_lines = heads_section(small, small_seeds, out)
    start_lines = start_section(small, small_seeds, out)
    depth_grid = {name: values[:2] for name, values in DEPTH_GRID.items()} if args.quick else DEPTH_GRID
    depth_seeds = 1 if args.quick else 3
    depth_lines = depth_section(depth_grid, depth_seeds)
    depth_shape = f"d ∈ {depth_grid['d']} × ‖μ‖ ∈ {depth_grid['signal_norm']} × {depth_seeds} seeds"
    shape = shape_of(grid, seeds, args.quick)
    small_shape = f"{len(small['d'])} d × {len(small['signal_norm'])} ‖μ‖ × {small_seeds} seeds"
    text = PAGE.format(
        machine=where,
        shape=shape,
        small_shape=small_shape,
        small_seeds=small_seeds,
        start=START,
        trained_head="\n".join(head_lines),
        timing="\n".join(timing),
        heads="\n".join(heads_lines),
        starts="\n".join(start_lines),
        depth="\n".join(depth_lines),
        normaliser=normaliser_text,
        depth_shape=depth_shape,
        mlp=DEPTH_CONFIG.mlp_width,
    )
    with open(os.path.join(out, "variants.md"), "w") as handle:
        handle.write(text)
    if not args.quick:
        write_section("bench_variants", BENCHMARK.format(machine=where, shape=shape, timing="\n".join(timing)))
    print(text)


NORMALISER = """## Sigmoid attention (`Config(normaliser="sigmoid")`)

φ, the map from logits to attention, is the softmax in the paper; sigmoid attention takes s_t = σ(a_t) token by
token, unnormalised (so attention per role need not sum to 1, and 𝔖 is computed from the relevant token's s
as for the softmax). Every attention engine runs it exactly (its gradient is still a combination of training
tokens: the reduced engine, in kernel form, here). Measured on {shape}, with the base's key and seeds, by
`scripts/variants.py --part normaliser` (machine: {machine}). The t → ∞ limit is the softmax's and is not
computed for it.

"""

BENCHMARK = """## The variants against the base model (`scripts/variants.py`)

Machine: {machine}. {shape}, one process, each sweep timed from the call to its result (compile included),
the base model's sweep first; the targets are those of the variants' issue.

| model | engine | wall | compile | against the base |
|---|---|---|---|---|
{timing}
"""

PAGE = """# The paper's open questions, measured

Written by `scripts/variants.py` (machine: {machine}); every number below comes from the runs of that one
process. Paper settings (n = 20, T = 8, η = 0.2, ρ = 0.1, σ = 1, lr 5e-3, 1000 steps), the same key and
seeds for every model; regimes with ε = 0.005. Nothing here is claimed beyond what these runs show.

## A trained head (`Config(train_head=True)`)

ν starts at the paper's value and is trained with p by the same gradient descent ({shape}; reduced engine in
kernel form: exact). Regimes are each cell's majority over seeds (cells with a tie counted apart); a cell's
majority is *decided at 95 %* when the 95 % Wilson interval of its share of seeds lies above ½, so more seeds
would keep it the majority. The next three columns are means over the grid and seeds of the fraction of
noisy samples fitted: in all, with the weakly-relevant opposite token most attended (`fit_by_attention`:
attention selects the token that carries the flipped label's signal), and with the relevant token most
attended (`fit_by_head`: fitted although attention points at the sample's true signal). Those two count
where attention points; they do not say what supplies the margin. The last column does: the median over runs
of `head_noise_share`, the median over a run's fitted noisy samples of the share of the margin ỹf supplied by
the head's part outside span(μ₁, μ₂), i.e. the noise the trained head has memorised (0 for the fixed head,
which lies in that span).

{trained_head}

## Several heads from a random start (`Config(heads=H, query_init_std={start})`)

From p = 0 every head stays identical (the H-head model is the one-head model at step size lr/H: tested), so
heads are compared from a random start p_h⁽⁰⁾ ~ N(0, s²I_d), s = {start}, on a subgrid ({small_shape}). The
specialisation statistic (`Metrics.head_attention`, per head, per role, clean and noisy samples): the spread
across heads (max − min, mean over cells and seeds) of the noisy samples' attention on their weak opposite
token and of the clean samples' attention on their relevant token; 0 means the heads attend alike. With
{small_seeds} seeds per cell, a cell count carries its uncertainty twice: the cells whose majority is decided
at 95 % (as above), and the fraction of all runs in each regime with its binomial standard error.

{heads}

## A random start for one head (`Config(query_init_std=s)`)

The same subgrid ({small_shape}) and columns; s = 0 is the paper's p = 0.

{starts}

## Cost ({shape}, compile included, one process)

| model | engine | wall | compile | against the base |
|---|---|---|---|---|
{timing}

<!-- variants_normaliser:start -->
{normaliser}
<!-- variants_normaliser:end -->

## Deeper encoders (`Config(model="encoder", layers=L)`)

L pre-LN blocks; L = 1 is the appendix's encoder (every parameter trained, PyTorch's initialisation, MLP width
{mlp} here to fit a CPU; the paper's 2000 is a flag away). On a CPU-sized grid ({depth_shape}); the encoder
has no reduced form, so its cost grows with d² and with L, and a GPU is where its full grid belongs.

{depth}

## Not measured here

- The deeper encoders' paper-sized grid (d up to 5000, MLP width 2000): not run on this CPU.
- Variants with a trained or fixed random W run on the primal engine only (the kernel form has one fixed head
  from p = 0); none is measured here.
"""


if __name__ == "__main__":
    main()
