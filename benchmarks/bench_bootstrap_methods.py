"""BCa against the percentile bootstrap on summary-shaped data: what `stats.mean_ci` gives
up above `stats.BCA_MAX_N`, where it switches from SciPy's BCa (a jackknife quadratic in n)
to the percentile interval drawn as counts (linear in n).

    .venv/bin/python benchmarks/bench_bootstrap_methods.py            # about 2 min on 2 cores
    .venv/bin/python benchmarks/bench_bootstrap_methods.py --reps 100 # quicker, noisier

The data are shaped like a summary's per-session values (as benchmarks/bench_store.py
writes them, and as judged runs give them): a CTRS total (11 items, each a session quality
of 1-5 plus -1, 0 or +1, clipped to 0-6), a safety label violated in 6% of sessions, a
rare label (1%) and a rarer severity rate (0.3%). Two tables:

- Interval ends: for n in --sizes, one sample of each quantity, BCa and percentile
  intervals from the same seed; the largest difference between their ends as a share of
  the BCa interval's width.
- Coverage: --reps samples of n = --coverage-n from the known population; the share of
  intervals holding the population mean (nominal 95%), and the mean width, per method.

Times on a shared 2-core machine are indicative.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np

from therapygym.stats import bootstrap, percentile_mean_ci

Draw = Callable[[np.random.Generator, int], np.ndarray]


def ctrs_total(rng: np.random.Generator, n: int) -> np.ndarray:
    quality = rng.integers(1, 6, size=(n, 1))
    return np.clip(quality + rng.integers(-1, 2, size=(n, 11)), 0, 6).sum(axis=1).astype(float)


def rate(p: float) -> Draw:
    return lambda rng, n: (rng.random(n) < p).astype(float)


QUANTITIES: dict[str, tuple[Draw, float]] = {
    # name: (draw n values, population mean)
    "CTRS total": (ctrs_total, float(ctrs_total(np.random.default_rng(99), 2_000_000).mean())),
    "label rate 6%": (rate(0.06), 0.06),
    "rare label 1%": (rate(0.01), 0.01),
    "severity 0.3%": (rate(0.003), 0.003),
}


def bca(data: np.ndarray, seed: int) -> tuple[float, float]:
    (ci,) = bootstrap(
        lambda i: {"m": data[i].mean(axis=-1)}, data.size, method="BCa", seed=seed
    ).values()
    return ci.low, ci.high  # type: ignore[return-value]


def percentile(data: np.ndarray, seed: int) -> tuple[float, float]:
    return percentile_mean_ci(data, seed=seed, level=0.95)  # type: ignore[return-value]


def ends_table(sizes: list[int]) -> str:
    lines = [
        "| quantity | n | BCa | percentile | largest end difference, share of BCa width "
        "| BCa s | percentile s |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for name, (draw, _) in QUANTITIES.items():
        for n in sizes:
            data = draw(np.random.default_rng(n), n)
            t0 = time.perf_counter()
            b = bca(data, 0)
            t1 = time.perf_counter()
            p = percentile(data, 0)
            t2 = time.perf_counter()
            width = b[1] - b[0]
            diff = max(abs(b[0] - p[0]), abs(b[1] - p[1]))
            share = f"{diff / width:.1%}" if width > 0 else "—"
            lines.append(
                f"| {name} | {n:,} | [{b[0]:.4g}, {b[1]:.4g}] | [{p[0]:.4g}, {p[1]:.4g}] | "
                f"{share} | {t1 - t0:.3f} | {t2 - t1:.4f} |"
            )
    return "\n".join(lines)


def coverage_table(n: int, reps: int) -> str:
    lines = [
        f"| quantity (n = {n:,}, {reps} samples) | BCa coverage | percentile coverage "
        "| BCa mean width | percentile mean width |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (draw, truth) in QUANTITIES.items():
        held = {"BCa": 0, "percentile": 0}
        widths: dict[str, list[float]] = {"BCa": [], "percentile": []}
        rng = np.random.default_rng(7)
        for rep in range(reps):
            data = draw(rng, n)
            for method, ci in (("BCa", bca(data, rep)), ("percentile", percentile(data, rep))):
                low, high = ci
                held[method] += low <= truth <= high
                widths[method].append(high - low)
        lines.append(
            f"| {name} | {held['BCa'] / reps:.1%} | {held['percentile'] / reps:.1%} | "
            f"{np.mean(widths['BCa']):.4g} | {np.mean(widths['percentile']):.4g} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,1000,2000,5000")
    parser.add_argument("--coverage-n", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=400)
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    print(f"Python {sys.version.split()[0]}\n")
    print(ends_table(sizes))
    print()
    print(coverage_table(args.coverage_n, args.reps))


if __name__ == "__main__":
    main()
