"""Fine-tune an open judge on expert ratings (SFT, then GRPO) and calibrate it before and after.

What TheraAlign did for TheraJudge, on our judges: the model learns to answer the calls our
CTRS and safety judges send (`calls.py`) with the experts' ratings, first by imitation (TRL's
SFTTrainer on the calls whose whole answer the experts' ratings fill; loss on the answer
only), then by GRPO (TRL's GRPOTrainer, reward: agreement with the experts, `reward.py`),
into one LoRA adapter. The held-out dialogues are never trained on; `calibrate` (the
library function the CLI runs) then judges them with the base model and with base+adapter,
both through the `hf:` backend with schema-constrained output, with the same plan, and the
two reports are compared per item and label.

Needs the `[train]` extra; runs on the CPU by default, as `therapygym train` does.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from therapygym.artefacts import write_text
from therapygym.calibration.analysis import Settings
from therapygym.calibration.bench import Bench
from therapygym.calibration.calibrate import calibrate, rubrics_needed, write_outputs
from therapygym.calibration.report import CalibrationReport
from therapygym.errors import ConfigError
from therapygym.judge_training.calls import (
    JudgeCall,
    bench_part,
    judge_calls,
    judge_plan,
    split_dialogues,
    trainable_kinds,
)
from therapygym.judge_training.reward import reward_function
from therapygym.models import load_model
from therapygym.store import RunStore

COMPARISON_FORMAT = "therapygym.judge-training/1"
# per CTRS item and per safety label, the statistics the side-by-side shows
ITEM_STATS = ("icc2_1", "krippendorff_alpha_ordinal", "weighted_kappa")
LABEL_STATS = ("cohen_kappa", "accuracy")


@dataclass(frozen=True)
class JudgeTrainingSettings:
    """What `therapygym train-judge` was asked to do."""

    base: str
    output_dir: Path
    holdout: float = 0.34
    seed: int = 0
    ctrs_mode: str = "one_call"
    safety_mode: str = "per_group"
    examples: bool = True
    rationale_chars: int = 240
    sft_steps: int = 20
    grpo_steps: int = 10
    learning_rate: float = 1e-4
    num_generations: int = 4
    lora_r: int = 8
    lora_alpha: int = 16
    resamples: int = 1000
    trl: dict[str, Any] = field(default_factory=dict)  # extra SFTConfig/GRPOConfig fields

    @property
    def base_spec(self) -> str:
        return f"hf:{self.base}"

    @property
    def adapter(self) -> Path:
        return self.output_dir / "adapter"

    @property
    def trained_spec(self) -> str:
        return f"hf:{self.base}?adapter={self.adapter}"


@dataclass(frozen=True)
class JudgeTrainingResult:
    train_ids: list[str]
    held_out_ids: list[str]
    sft_examples: int
    grpo_prompts: int
    before: CalibrationReport
    after: CalibrationReport
    comparison: dict[str, Any]
    paths: dict[str, Path]


def train_judge(
    bench: Bench, settings: JudgeTrainingSettings, console: Console | None = None
) -> JudgeTrainingResult:
    """Split, train, calibrate before and after; write the adapter, both calibration
    reports and `judge_comparison.json` under `settings.output_dir`."""
    say = console.print if console else (lambda *_: None)
    if not settings.sft_steps and not settings.grpo_steps:
        raise ConfigError("--sft-steps and --grpo-steps are both 0: there is nothing to train")
    train_ids, held_ids = split_dialogues(bench, settings.holdout, settings.seed)
    train_bench = bench_part(bench, train_ids, "training")
    held_bench = bench_part(bench, held_ids, "held out")
    kinds = trainable_kinds(rubrics_needed(bench))
    plan = judge_plan(
        settings.base_spec,
        kinds,
        ctrs_mode=settings.ctrs_mode,
        safety_mode=settings.safety_mode,
        examples=settings.examples,
        rationale_chars=settings.rationale_chars,
    )
    calls = [c for c in judge_calls(train_bench, plan, load_model(settings.base_spec)) if c.rated]
    sft = [c for c in calls if c.target is not None]
    if not calls or (settings.grpo_steps == 0 and not sft):
        raise ConfigError(
            f"{bench.name}: the training dialogues give no judge call to learn from (the "
            "experts rated none of what the calls ask, or, with no GRPO steps, none fully)"
        )
    say(
        f"train-judge: {len(train_ids)} training and {len(held_ids)} held-out dialogues; "
        f"{len(sft)} SFT answers, {len(calls)} GRPO prompts"
    )
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    calibration = Settings(resamples=settings.resamples, seed=settings.seed)
    say("calibrating the base model on the held-out dialogues")
    before = _calibrate(held_bench, plan, settings.output_dir / "before", calibration, console)
    _fit(settings, sft, calls, say)
    say("calibrating the trained judge on the held-out dialogues")
    trained = plan.model_copy(update={"judges": (settings.trained_spec,)})
    # the adapter's path names the judge in score records, so an earlier adapter's scores
    # in this folder would be taken for this one's: its store goes
    for old in (settings.output_dir / "after").glob("store.sqlite*"):
        old.unlink()
    after = _calibrate(held_bench, trained, settings.output_dir / "after", calibration, console)
    comparison = compare(before, after, settings, train_ids, held_ids)
    path = settings.output_dir / "judge_comparison.json"
    write_text(path, json.dumps(comparison, indent=2))
    return JudgeTrainingResult(
        train_ids=train_ids,
        held_out_ids=held_ids,
        sft_examples=len(sft),
        grpo_prompts=len(calls),
        before=before,
        after=after,
        comparison=comparison,
        paths={"adapter": settings.adapter, "comparison": path},
    )


def _calibrate(
    bench: Bench, plan: Any, folder: Path, settings: Settings, console: Console | None
) -> CalibrationReport:
    """`calibrate` as the CLI runs it, on its own store (one per judge, so the two runs of
    one held-out bench never share a run), without the response cache or recalibration."""
    report = asyncio.run(
        calibrate(
            bench,
            plan,
            RunStore(folder / "store.sqlite"),
            settings,
            method=None,
            concurrency=1,
            console=console,
        )
    )
    write_outputs(report, folder)
    return report


def _fit(
    settings: JudgeTrainingSettings,
    sft: list[JudgeCall],
    calls: list[JudgeCall],
    say: Any,
) -> None:
    """SFT then GRPO on one LoRA adapter, saved to `settings.adapter`."""
    try:
        from datasets import Dataset
        from peft import LoraConfig
        from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer
    except ImportError as err:
        raise ConfigError(f"train-judge needs the [train] extra ({err.name} is missing)") from None
    from therapygym.models.transformers_local import load_causal_lm

    common = {
        "learning_rate": settings.learning_rate,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        # on the CPU memory is not what runs short; recomputing activations only costs time
        "gradient_checkpointing": False,
        "seed": settings.seed,
        **settings.trl,
    }
    model, tokenizer = load_causal_lm(settings.base)
    model.train()
    lora = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        task_type="CAUSAL_LM",
    )
    if sft and settings.sft_steps:
        say(f"SFT: {settings.sft_steps} steps on {len(sft)} expert answers")
        rows = [
            {"prompt": c.prompt(), "completion": [{"role": "assistant", "content": c.target}]}
            for c in sft
        ]
        trainer = SFTTrainer(
            model=model,
            args=_config(
                SFTConfig,
                output_dir=str(settings.output_dir / "sft"),
                max_steps=settings.sft_steps,
                per_device_train_batch_size=1,
                max_length=None,  # a judge prompt is never cut: the answer is at its end
                **common,
            ),
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora,
        )
        trainer.train()
        model, lora = trainer.model, None
    if settings.grpo_steps:
        say(f"GRPO: {settings.grpo_steps} steps on {len(calls)} calls")
        tokenizer.padding_side = "left"
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[reward_function({c.id: c for c in calls})],
            args=_config(
                GRPOConfig,
                output_dir=str(settings.output_dir / "grpo"),
                max_steps=settings.grpo_steps,
                num_generations=settings.num_generations,
                per_device_train_batch_size=settings.num_generations,
                max_completion_length=max(c.max_tokens for c in calls),
                beta=0.0,
                **common,
            ),
            train_dataset=Dataset.from_list(
                [{"prompt": c.prompt(), "call_id": c.id} for c in calls]
            ),
            processing_class=tokenizer,
            peft_config=lora,
        )
        trainer.train()
        model = trainer.model
    model.save_pretrained(str(settings.adapter))


def _config(kind: Any, **fields: Any) -> Any:
    try:
        return kind(**fields)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"train-judge: {kind.__name__}: {err}") from None


def compare(
    before: CalibrationReport,
    after: CalibrationReport,
    settings: JudgeTrainingSettings,
    train_ids: list[str],
    held_ids: list[str],
) -> dict[str, Any]:
    """The two calibrations side by side: per CTRS item the judge's agreement with the
    experts' mean (ICC(2,1), ordinal alpha, weighted kappa), per safety label with the
    experts (kappa, accuracy), each with the number of dialogues; None where a statistic is
    undefined (too few dialogues, no variance)."""

    def items(report: CalibrationReport) -> dict[str, dict[str, Any]]:
        out = {}
        for r in [*report.items, *([report.total] if report.total else [])]:
            c = r.judge_vs_mean_human
            out[r.item] = _stats(c.stats if c else None, ITEM_STATS, c.n_dialogues if c else 0)
        return out

    def labels(report: CalibrationReport) -> dict[str, dict[str, Any]]:
        out = {}
        for r in report.labels:
            c = r.judge_vs_human
            out[r.label] = _stats(c.stats if c else None, LABEL_STATS, c.n_dialogues if c else 0)
        return out

    return {
        "format": COMPARISON_FORMAT,
        "base": settings.base_spec,
        "trained": settings.trained_spec,
        "split": {
            "seed": settings.seed,
            "holdout": settings.holdout,
            "training": train_ids,
            "held_out": held_ids,
        },
        "items": {"before": items(before), "after": items(after)},
        "labels": {"before": labels(before), "after": labels(after)},
        "failed_units": {
            "before": before.judge.failed_units if before.judge else None,
            "after": after.judge.failed_units if after.judge else None,
        },
    }


def _stats(stats: Any, names: tuple[str, ...], n: int) -> dict[str, Any]:
    values = {k: getattr(stats, k) if stats is not None else None for k in names}
    return {"n": n, **{k: v if v is None or v == v else None for k, v in values.items()}}
