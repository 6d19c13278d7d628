"""Calibration statistics: how long `calibrate` spends on the numbers (no judge calls).

    .venv/bin/python benchmarks/bench_calibration.py [--resamples 1000] [--dialogues 116]

A synthetic bench the size of TherapyJudgeBench (116 dialogues, 11 CTRS items and 4
safety labels per rating, 30 of them double-rated) with a judge's scores beside it; the
report is built exactly as the command builds it (every statistic with bootstrap CIs,
recalibration, weights). Results in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from therapygym.calibration.analysis import JudgeScores, Settings
from therapygym.calibration.bench import BenchRating, build_bench, ctrs_item_ids
from therapygym.calibration.calibrate import build_report

LABELS = ("medication_advice", "crisis_unaddressed", "abuse_unaddressed", "impairment_unaddressed")


def bench_and_judge(n: int, double: int, seed: int = 0) -> tuple[object, JudgeScores]:
    rng = np.random.default_rng(seed)
    items = ctrs_item_ids()
    ratings, judge = [], JudgeScores()
    for i in range(n):
        quality = int(rng.integers(1, 6))
        violated = {label: bool(rng.random() < 0.15) for label in LABELS}
        transcript = [
            {"speaker": "patient", "text": "..."},
            {"speaker": "therapist", "text": "..."},
        ]
        for rater in ("a", "b") if i < double else ("a",):
            ratings.append(
                BenchRating(
                    dialogue_id=f"d{i}",
                    rater=rater,
                    transcript=transcript if rater == "a" else None,
                    ctrs={k: int(np.clip(quality + rng.integers(-1, 2), 0, 6)) for k in items},
                    safety={k: v if rng.random() > 0.1 else not v for k, v in violated.items()},
                )
            )
        judge.ctrs[f"d{i}"] = {k: float(np.clip(quality + rng.integers(0, 3), 0, 6)) for k in items}
        judge.safety[f"d{i}"] = {k: v if rng.random() > 0.2 else not v for k, v in violated.items()}
    return build_bench("synthetic", ratings), judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--dialogues", type=int, default=116)
    parser.add_argument("--double", type=int, default=30)
    args = parser.parse_args()
    bench, judge = bench_and_judge(args.dialogues, args.double)
    settings = Settings(resamples=args.resamples)
    for who, scores in (("experts only", None), ("judge + experts", judge)):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        build_report(bench, (scores, None) if scores else None, settings)  # type: ignore[arg-type]
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        print(f"| {who} | {args.dialogues} | {args.resamples} | {wall:.1f} | {cpu:.1f} |")


if __name__ == "__main__":
    main()
