"""`train-judge`: LoRA-fine-tune an open judge on expert ratings, calibrated before and after."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from therapygym.cli.output import term, wrote

if TYPE_CHECKING:
    from rich.table import Table


def train_judge(
    bench: Annotated[
        str,
        typer.Option(
            help="Expert ratings: a bench JSONL file (therapygym.bench/1, as `studio export` "
            "writes), or annomi:PATH, moore:PATH, table:PATH (as for calibrate)."
        ),
    ],
    base: Annotated[
        str,
        typer.Option(help="The open model to train: smollm2, a .gguf file or a model folder."),
    ],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Folder for the adapter and the reports."),
    ] = None,
    mapping: Annotated[
        Path | None, typer.Option(help="Column mapping (YAML) for a table: bench.")
    ] = None,
    holdout: Annotated[
        float, typer.Option(help="Share of dialogues held out for the before/after calibration.")
    ] = 0.34,
    seed: Annotated[
        int, typer.Option(help="Seed of the split, the trainers and the bootstrap.")
    ] = 0,
    ctrs_mode: Annotated[str, typer.Option(help="CTRS calls: one_call or per_item.")] = "one_call",
    safety_mode: Annotated[
        str, typer.Option(help="Safety calls: per_group (trainable labels) or one_call.")
    ] = "per_group",
    examples: Annotated[
        bool, typer.Option(help="ctrs@2.0's skill examples in the judge prompt.")
    ] = True,
    rationale_chars: Annotated[
        int, typer.Option(help="Cap on each rationale (part of the judges' JSON schema).")
    ] = 240,
    sft_steps: Annotated[int, typer.Option(min=0, help="SFT steps on the experts' answers.")] = 20,
    grpo_steps: Annotated[int, typer.Option(min=0, help="GRPO steps after SFT.")] = 10,
    learning_rate: Annotated[float, typer.Option(min=0, help="Learning rate of both.")] = 1e-4,
    num_generations: Annotated[
        int, typer.Option(min=2, help="GRPO answers sampled per judge call.")
    ] = 4,
    lora_r: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 8,
    resamples: Annotated[
        int, typer.Option(min=100, help="Calibration bootstrap resamples.")
    ] = 1000,
) -> None:
    r"""Fine-tune an open judge (LoRA: SFT, then GRPO) on expert ratings (\[train])."""
    from therapygym.calibration.importers import load_bench
    from therapygym.config import check_output
    from therapygym.judge_training.train import JudgeTrainingSettings, train_judge

    check_output(output, folder=True, option="--output")
    loaded = load_bench(bench, mapping=mapping)
    settings = JudgeTrainingSettings(
        base=base,
        output_dir=output or Path("runs") / f"judge-{loaded.digest}",
        holdout=holdout,
        seed=seed,
        ctrs_mode=ctrs_mode,
        safety_mode=safety_mode,
        examples=examples,
        rationale_chars=rationale_chars,
        sft_steps=sft_steps,
        grpo_steps=grpo_steps,
        learning_rate=learning_rate,
        num_generations=num_generations,
        lora_r=lora_r,
        lora_alpha=2 * lora_r,
        resamples=resamples,
    )
    result = train_judge(loaded, settings, console=term.err)
    term.out.print(comparison_table(result.comparison))
    wrote(result.paths.values())
    term.out.print(
        f"judge with --judge '{settings.trained_spec}'",
        highlight=False,
    )


def comparison_table(comparison: dict) -> Table:
    """Before and after, side by side: per CTRS item and safety label, each statistic."""
    from rich.table import Table

    table = Table(title="Held-out agreement with the experts: base vs trained judge")
    for column in ("item / label", "n", "statistic", "before", "after"):
        table.add_column(column, justify="left" if column != "n" else "right")
    for group in ("items", "labels"):
        before, after = comparison[group]["before"], comparison[group]["after"]
        for name, stats in before.items():
            for stat, value in stats.items():
                if stat == "n":
                    continue
                table.add_row(
                    name,
                    f"{stats['n']}/{after.get(name, {}).get('n', 0)}",
                    stat,
                    _fmt(value),
                    _fmt(after.get(name, {}).get(stat)),
                )
    return table


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
