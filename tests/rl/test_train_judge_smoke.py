"""`therapygym train-judge` end to end on the embedded model: SFT, GRPO, calibrate before/after.

A tiny bench of our own writing (6 short dialogues, CTRS scores by two experts on two of
them); CTRS per item without skill examples and 20-character rationales keep each judge
prompt near 1.2k tokens. The 135M model's numbers mean nothing: the test checks that the
pipeline runs and that the hf: judge, base and trained, always answers in the schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clirun import cli

from therapygym.calibration.bench import BenchRating, build_bench, ctrs_item_ids, write_bench_jsonl

pytestmark = pytest.mark.slow

LINES = [
    ("I cannot sleep before exams.", "What goes through your mind as you lie awake?", 4),
    ("My boss criticised me today.", "Shall we focus today on what happened with your boss?", 5),
    ("I feel low most days.", "You should just cheer up.", 1),
    ("I argued with my sister.", "What did you tell yourself after the argument?", 4),
    ("I avoid parties.", "Parties are fun, go anyway.", 1),
    ("Work feels endless.", "Could we list this week's tasks together and pick one?", 5),
]


def tiny_bench(path: Path) -> None:
    ratings = []
    for i, (client, therapist, quality) in enumerate(LINES):
        transcript = [
            {"speaker": "patient", "text": client},
            {"speaker": "therapist", "text": therapist},
        ]
        for rater, shift in (("a", 0), ("b", 1)) if i < 2 else (("a", 0),):
            ratings.append(
                BenchRating(
                    dialogue_id=f"d{i}",
                    rater=rater,
                    transcript=transcript if rater == "a" else None,
                    ctrs={item: min(6, quality + shift) for item in ctrs_item_ids()},
                    rationale="Clear focus." if quality > 3 else "Dismissive.",
                )
            )
    write_bench_jsonl(build_bench("tiny", ratings), path)


@pytest.mark.timeout(1800)
def test_train_judge_then_calibrate_before_and_after(tmp_path: Path) -> None:
    tiny_bench(tmp_path / "bench.jsonl")
    out = tmp_path / "judge"
    ran = cli(
        "train-judge", "--bench", str(tmp_path / "bench.jsonl"), "--base", "smollm2",
        "--output", str(out), "--holdout", "0.17", "--ctrs-mode", "per_item", "--no-examples",
        "--rationale-chars", "20", "--sft-steps", "1", "--grpo-steps", "1",
        "--num-generations", "2", "--resamples", "100",
    )  # fmt: skip
    assert ran.code == 0, ran.stderr[-3000:]
    assert "base vs trained judge" in ran.stdout and "icc2_1" in ran.stdout
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    comparison = json.loads((out / "judge_comparison.json").read_text())
    split = comparison["split"]
    assert len(split["held_out"]) == 1 and not set(split["held_out"]) & set(split["training"])
    assert (
        set(comparison["items"]["before"])
        == set(comparison["items"]["after"])
        >= set(ctrs_item_ids())
    )
    # every unit judged, before and after: constrained hf: output always parses
    assert comparison["failed_units"] == {"before": 0, "after": 0}
    for side in ("before", "after"):
        report = json.loads((out / side / "calibration.json").read_text())
        assert report["judge"]["specs"][0].startswith("hf:")
    assert "adapter=" in comparison["trained"]
