"""`train`: GRPO + LoRA on simulated sessions ([train] extra)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import typer

from therapygym.cli.options import CacheOpt, ModelsFileOpt, NoCacheOpt, StoreOpt
from therapygym.cli.output import term


def train(
    config: Annotated[Path, typer.Option(help="Training config (YAML); see docs/training.md.")],
    store: StoreOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    models_file: ModelsFileOpt = None,
) -> None:
    r"""GRPO + LoRA on simulated sessions, rewarded by the CTRS and safety judges (\[train])."""
    from therapygym.config import check_cache, check_output, response_cache
    from therapygym.report.terminal import usage_table
    from therapygym.rl.ranks import Place
    from therapygym.rl.train import check_train_config, load_train_config, resume_note
    from therapygym.rl.train import train as run_training
    from therapygym.store import RunStore, check_store_path

    plan = load_train_config(config)
    where = f"train config {config}"
    # every output first, before TRL is imported (seconds) and the judges are built
    check_output(Path(plan.output_dir), folder=True, option=f"{where}: field 'output_dir'")
    check_store_path(store)
    if not no_cache:
        check_cache(cache)
    inputs = check_train_config(plan, models_file=models_file, where=where)
    # under `accelerate launch` only the main process opens the store (rl/ranks.py)
    main = Place.of(inputs.grpo_args).is_main
    note = resume_note(plan, inputs)
    if main and note:
        term.out.print(note, highlight=False)
    result = run_training(
        plan,
        inputs=inputs,
        store=RunStore(store) if main else None,
        cache=response_cache(cache, no_cache),
        models_file=models_file,
        console=term.out,
    )
    if not main:
        return
    term.out.print(usage_table(result.usage))
    therapist = (  # lora: null trains every weight: the output is a model folder
        f"hf:{plan.model}?adapter={result.adapter}" if plan.lora else f"hf:{result.adapter}"
    )
    if plan.chat_template_kwargs:  # evaluated as trained (Qwen3: thinking off)
        options = quote(json.dumps(plan.chat_template_kwargs, separators=(",", ":")))
        therapist += f"{'&' if plan.lora else '?'}chat_template_kwargs={options}"
    term.out.print(
        f"{result.steps} step{'' if result.steps == 1 else 's'} in {result.wall_s:.0f} s; "
        f"rollouts stored as run "
        f"{result.run_id}; reward per step: {result.rewards}\n"
        f"{'adapter' if plan.lora else 'model'}: {result.adapter}  (evaluate it with "
        f"--therapist '{therapist}')",
        highlight=False,
    )
