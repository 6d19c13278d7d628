"""`therapygym train --config train.yaml`: GRPO with LoRA on whole simulated sessions.

The policy is loaded by transformers (a model folder, a GGUF file it dequantises, or the
embedded SmolLM2), wrapped in a LoRA adapter (peft), and trained by TRL's GRPOTrainer
through `TherapyRollout`: the patient is a frozen chat model (any spec), the reward is R
from the frozen judge (`rl/reward.py`), weights from `reward_weights`: a file (the one
`therapygym calibrate` writes, or a hand-written one with penalties per severity) or a
preset (`clinical`, the default, or `therapygym-flat`, the paper's lambda = 1). Every
rollout is stored as a session of run `run_id`, with its scores and reward breakdown, so
`runs show` and the report can look at what the policy said. The reward per step goes to
`<output_dir>/rewards.jsonl`; the adapter to `<output_dir>/adapter`, ready for
`therapygym eval --therapist hf:<model>?adapter=<output_dir>/adapter`.

`eval_judge` names a second judge that scores every rollout with the same reward formula
and never enters the loss: rewards.jsonl then holds both judges' R per step, so a policy
that games its reward judge (the reward rises, the evaluation judge stays flat) is seen.
It reads the rollouts the policy already made, so it costs judge calls and no generation;
being the same sessions, the two scores differ only by their judges.

Needs the `[train]` extra. `grpo:` is passed to TRL's `GRPOConfig` as it is (TRL checks
the names), with our defaults for what a CPU smoke run needs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from therapygym.errors import ConfigError, TherapygymError
from therapygym.judges.base import JudgeSettings
from therapygym.judges.safety import SafetyMode
from therapygym.models import AccountedModel, ResponseCache, UsageLedger, load_model
from therapygym.patients.profile import PatientProfile
from therapygym.patients.select import select_profiles
from therapygym.records import SessionConfig
from therapygym.rl.loop import BackgroundLoop
from therapygym.rl.ranks import (
    GatheredStore,
    Place,
    check_generation_gathering,
    check_same_start,
    flush_to_main,
    gather_usage,
    main_decides,
)
from therapygym.rl.reward import RewardSpec, SessionRewarder, load_reward_spec
from therapygym.rl.trl import EVAL_METRIC, TherapyRollout, reward_functions
from therapygym.store import RunStore
from therapygym.therapists.prompted import TherapistPrompt, resolve_prompt
from therapygym.yamlfile import read_yaml_model


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(8, ge=1, le=512)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


class TrainConfig(BaseModel):
    """A training run, as written in train.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: str = Field("smollm2", description="smollm2, a .gguf file, or a model folder.")
    patient_model: str = "local:smollm2"
    judge: str = "local:smollm2"
    eval_judge: str | None = Field(
        None,
        description="A second model spec that scores every rollout for the log, never the "
        "reward; it must not be the reward judge.",
    )
    patients: str = Field("all", description="A patient selector, as for `run --patients`.")
    seeds: tuple[int, ...] = Field((0,), min_length=1, description="Episodes per profile.")
    session: SessionConfig = SessionConfig(max_turns=6, max_tokens=96)
    turn_tokens: int = Field(96, ge=8, le=4096, description="Policy tokens per turn.")
    therapist_prompt: str | None = Field(
        None,
        description="A file, 'none', or 'no-turn-info'; default: our CBT prompt with turn notes.",
    )
    reward_weights: str | None = Field(
        None,
        description="A weights file, or a preset: clinical (the default: penalties by "
        "severity), therapygym-flat (TherapyGym's lambda = 1 per violation) or no-safety "
        "(its ablation); `?penalties=<preset>` after a file replaces the file's penalties.",
    )
    judge_samples: int = Field(1, ge=1, le=16)
    judge_concurrency: int | None = Field(
        None, ge=1, le=256, description="Judge calls in flight; default 1 in-process, else 8."
    )
    judge_rationale_chars: int = Field(120, ge=20, le=2000)
    judge_safety_mode: SafetyMode = Field(
        "one_call",
        description="safety@2.0 in one call, or per_group (several shorter calls: an "
        "8k-context judge such as the embedded model needs it).",
    )
    judge_examples: bool = Field(
        True,
        description="ctrs@2.0: show the reward judge the rubric's skill examples (false "
        "shortens every CTRS call; the CI smoke run turns them off).",
    )
    lora: LoraSettings | None = Field(
        LoraSettings(),
        description="The LoRA adapter; null trains every weight (saved to <output_dir>/model).",
    )
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Passed to every rendering of the policy's conversation (the prompt, "
        "each patient turn) and to TRL's GRPOConfig, e.g. {enable_thinking: false} for Qwen3.",
    )
    grpo: dict[str, Any] = Field(default_factory=dict, description="TRL GRPOConfig fields.")
    output_dir: str = "runs/train"


def load_train_config(path: Path | str) -> TrainConfig:
    """The config file (relative paths in it are taken from the working directory)."""
    return read_yaml_model(Path(path), "train config", TrainConfig, ConfigError)


@dataclass(frozen=True)
class TrainInputs:
    """What a config names, read and checked: what `train` runs on."""

    profiles: list[PatientProfile]
    prompt: TherapistPrompt | None
    reward: RewardSpec
    grpo_args: Any  # TRL's GRPOConfig (TRL is imported only when training)
    resumed_step: int = 0  # the step of grpo.resume_from_checkpoint's checkpoint


def check_train_config(
    config: TrainConfig, *, models_file: Path | str | None = None, where: str = "train config"
) -> TrainInputs:
    """Everything a config names, read and checked before anything is written: the
    patients, the prompt and weights files, the patient and judge specs (built and
    dropped: no connection, no weights), the policy's chat template against
    `chat_template_kwargs` when there are any and the policy is on disk (its tokenizer
    only), and last TRL's own settings (which imports TRL).
    Errors name the field; `where` names the config (its file)."""

    def field(name: str, check: Any) -> Any:
        try:
            return check()
        except TherapygymError as err:
            raise ConfigError(f"{where}: field '{name}': {err}") from None

    def judge(name: str, spec: str) -> Any:
        # an hf: judge is schema-constrained too (models/hf_constrained.py)
        return field(name, lambda: load_model(spec, models_file=models_file))

    prompt = field("therapist_prompt", lambda: resolve_prompt(config.therapist_prompt))
    reward = field("reward_weights", lambda: load_reward_spec(config.reward_weights))
    profiles = field("patients", lambda: select_profiles(config.patients))
    field("patient_model", lambda: load_model(config.patient_model, models_file=models_file))
    rewarding = judge("judge", config.judge)
    if config.eval_judge is not None:
        evaluating = judge("eval_judge", config.eval_judge)
        if evaluating.identity == rewarding.identity:
            raise ConfigError(
                f"{where}: field 'eval_judge': {config.eval_judge} is the reward judge "
                f"({config.judge}); a judge the policy trains on cannot tell whether it was gamed"
            )
    from therapygym.models.transformers_local import (
        check_template_kwargs,
        load_tokenizer,
        on_disk,
    )

    # keys the policy's template never reads would do nothing; checked here, before the
    # run's record holds them, when the policy is on disk (a config may be checked before
    # the model is downloaded; `train` runs this check again before it writes anything)
    if config.chat_template_kwargs and on_disk(config.model):
        tokenizer = field("model", lambda: load_tokenizer(config.model))
        try:
            check_template_kwargs(tokenizer, config.chat_template_kwargs, config.model)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
    grpo_args = _grpo_args(config, where)
    from therapygym.rl.generation import check_generation  # what generation can honour

    check_generation(config.grpo, grpo_args, where)
    return TrainInputs(profiles, prompt, reward, grpo_args, checkpoint_step(grpo_args, where))


def checkpoint_step(args: Any, where: str = "train config") -> int:
    """The optimizer step that `grpo.resume_from_checkpoint`'s checkpoint holds (0 for a
    fresh run), read from its trainer_state.json. Checked with the config, so a path that
    is not a checkpoint stops the command with one line before anything is stored, rather
    than inside TRL after the policy has loaded.

    `true` is resolved here, in `args`, to the latest whole checkpoint of this run, or to a
    fresh start when there is none yet: so a job that may be killed or preempted reruns
    the same command and config. A checkpoint folder without a readable trainer_state.json
    is one a kill cut short while saving (the trainer writes that file last) and is passed
    over, where TRL's own `true` would take the highest-numbered folder, whole or not."""
    if args.resume_from_checkpoint is True:
        if args.save_strategy == "no":
            raise ConfigError(
                f"{where}: grpo.resume_from_checkpoint: true resumes from the run's own "
                "checkpoints, and it saves none: set save_strategy: steps and save_steps"
            )
        latest = latest_checkpoint(Path(args.output_dir))
        args.resume_from_checkpoint = None if latest is None else str(latest)
    folder = args.resume_from_checkpoint
    if not folder:
        return 0
    step = _saved_step(Path(folder))
    if step is None:
        raise ConfigError(
            f"{where}: grpo.resume_from_checkpoint: {folder} is not a trainer checkpoint "
            f"(expected {Path(folder) / 'trainer_state.json'} with its global_step; a run "
            "saves them as <output_dir>/trainer/checkpoint-N when save_strategy is steps; "
            "true takes the latest whole one)"
        )
    return step


def latest_checkpoint(trainer_dir: Path) -> Path | None:
    """The whole checkpoint (`checkpoint-N` with its trainer_state.json) of the highest
    step under the trainer's folder; None when there is none."""
    for _, folder in sorted(_checkpoints(trainer_dir).items(), reverse=True):
        if _saved_step(folder) is not None:
            return folder
    return None


def _checkpoints(trainer_dir: Path) -> dict[int, Path]:
    """The trainer's `checkpoint-N` folders by N, whole or not."""
    folders = trainer_dir.glob("checkpoint-*") if trainer_dir.is_dir() else ()
    return {
        int(number): folder
        for folder in folders
        if (number := folder.name.removeprefix("checkpoint-")).isdigit() and folder.is_dir()
    }


def _saved_step(checkpoint: Path) -> int | None:
    """The global_step a checkpoint's trainer_state.json records; None without one."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        return int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resume_note(config: TrainConfig, inputs: TrainInputs) -> str | None:
    """The line `train` prints for a config that resumes: where it starts, and (for
    `true`) the later checkpoint folders a kill cut short, which it passed over."""
    asked = config.grpo.get("resume_from_checkpoint")
    if not asked:
        return None
    trainer_dir = Path(inputs.grpo_args.output_dir)
    found = inputs.grpo_args.resume_from_checkpoint
    if found is None:
        return f"no whole checkpoint under {trainer_dir} yet: training starts at step 0"
    note = f"resuming from {found} (step {inputs.resumed_step})"
    if asked is True:
        cut = [
            f.name for n, f in sorted(_checkpoints(trainer_dir).items()) if n > inputs.resumed_step
        ]
        if cut:
            note += f"; passed over {', '.join(cut)}: no readable trainer_state.json"
            note += " (cut short while saving)"
    return note


def keep_reward_log(path: Path, through_step: int) -> None:
    """rewards.jsonl as a run starting now must find it: empty for a fresh run; for a
    resume, the rows of the steps its checkpoint holds. The steps after the checkpoint are
    played again and log their rows again, so a resumed run's log has every step once
    (a fresh file would lose the rows before the checkpoint, an untouched one would hold
    the replayed steps twice). A line cut short by a kill is a step after the checkpoint
    (the trainer logs a step before it saves it): dropped with the others."""
    if through_step == 0 or not path.exists():
        path.unlink(missing_ok=True)
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if 0 < _logged_step(line) <= through_step]
    path.write_text("".join(kept), encoding="utf-8")


def _logged_step(line: str) -> int:
    """The step of one rewards.jsonl row; 0 for a line that is not a whole row."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 0


def _grpo_args(config: TrainConfig, where: str = "train config") -> Any:
    """TRL's GRPOConfig: our defaults, the config's `grpo:`, our output folder."""
    try:
        from trl import GRPOConfig
    except ImportError as err:
        raise ConfigError(f"training needs the [train] extra ({err.name} is missing)") from None
    if "chat_template_kwargs" in config.grpo:
        raise ConfigError(
            f"{where}: grpo.chat_template_kwargs: set chat_template_kwargs at the top level "
            "(the rollout renders the policy's prompts with it, and TRL is given the same)"
        )
    grpo = {
        **GRPO_DEFAULTS,
        **config.grpo,
        "chat_template_kwargs": dict(config.chat_template_kwargs),
        "output_dir": str(Path(config.output_dir) / "trainer"),
    }
    try:
        args = GRPOConfig(**grpo)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: grpo: {err}") from None
    check_generation_gathering(args, where)
    return args


GRPO_DEFAULTS: dict[str, Any] = {
    "max_steps": 2,
    "num_generations": 2,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "learning_rate": 1e-5,
    "beta": 0.0,  # no reference model: half the memory, as TRL recommends for LoRA runs
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
    "use_cpu": True,
    "temperature": 0.9,
    "max_completion_length": 2048,
    "disable_tqdm": True,
}


def reward_log(path: Path, console: Console | None) -> Any:
    """The trainer callback that writes `path` (rewards.jsonl), one row per logged step,
    and prints it to `console`: on the main process only (every process logs the same
    metrics, TRL having gathered them)."""
    from transformers import TrainerCallback

    class RewardLog(TrainerCallback):  # type: ignore[misc]
        """Appends TRL's reward metrics of every logged step to rewards.jsonl, with the
        evaluation judge's beside them (`rl/trl.py` logs those through TRL)."""

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            if not logs or "reward" not in logs or not state.is_world_process_zero:
                return
            kept = {
                k: v for k, v in logs.items() if "reward" in k or k.startswith(f"{EVAL_METRIC}/")
            }
            row = {"step": state.global_step, **kept}
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            if console is not None:
                parts = [f"{k}={v:.3f}" for k, v in row.items() if isinstance(v, float)]
                console.print(f"step {state.global_step}: " + "  ".join(parts))

    return RewardLog()


def build_rewarder(config: TrainConfig, spec: RewardSpec, judge: AccountedModel) -> SessionRewarder:
    """R from one judge under the config's judge settings: the reward judge's, and the
    evaluation judge's on the same formula, so the two are on one scale."""
    in_process = judge.model.config.in_process
    return SessionRewarder(
        judge,
        spec,
        samples=config.judge_samples,
        settings=JudgeSettings(
            temperature=0.0 if config.judge_samples == 1 else 0.7,
            rationale_chars=config.judge_rationale_chars,
        ),
        concurrency=config.judge_concurrency or (1 if in_process else 8),
        safety_mode=config.judge_safety_mode,
        examples=config.judge_examples,
    )


def run_record(config: TrainConfig, inputs: TrainInputs, processes: int = 1) -> dict[str, Any]:
    """The training run's identity (a resume with another is refused). Fields added since
    runs were first stored are left out while they change nothing (no evaluation judge; the
    CTRS examples shown, as before the option; no chat_template_kwargs; a therapist prompt
    without turn notes), so those runs still resume; a prompt with turn notes is recorded
    by its fingerprint, so a run from before them is not resumed with them, nor a run with
    them after the note or the prompt changed. Several processes are recorded by their
    count (`rl/ranks.py`: session ids depend on it); one is left out, as before they were
    possible. `grpo.resume_from_checkpoint` is left out: it says where a resume starts,
    not what the run is, and the rerun that resumes a run must differ from it there."""
    unchanged = {"eval_judge"} if not config.eval_judge else set()
    unchanged |= {"judge_examples"} if config.judge_examples else set()
    unchanged |= {"chat_template_kwargs"} if not config.chat_template_kwargs else set()
    train = config.model_dump(mode="json", exclude=unchanged or None)
    train["grpo"].pop("resume_from_checkpoint", None)
    record: dict[str, Any] = {"train": train, "reward": inputs.reward.source}
    if inputs.prompt is not None and inputs.prompt.turn_aware:
        record["turn_notes"] = inputs.prompt.fingerprint()
    if processes > 1:
        record["processes"] = processes
    return record


@dataclass
class TrainResult:
    run_id: str
    adapter: Path
    rewards: Path  # rewards.jsonl: TRL's reward metrics per logged step
    steps: int
    wall_s: float
    usage: UsageLedger  # every process's calls, summed


def train(
    config: TrainConfig,
    *,
    store: RunStore | None,
    cache: ResponseCache | None,
    models_file: Path | str | None = None,
    console: Console | None = None,
    inputs: TrainInputs | None = None,
) -> TrainResult:
    """Run GRPO; returns where the adapter and the reward log are, and the wall time.
    `inputs` is `check_train_config`'s result when the caller checked first (the CLI,
    before it opens the store); otherwise the config is checked here, before anything
    is written. Under `accelerate launch` every process calls this; `store` is needed on
    the main process only (the others pass None, `rl/ranks.py` says why), which alone
    writes the store, the adapter and rewards.jsonl."""
    inputs = inputs or check_train_config(config, models_file=models_file)
    try:
        from datasets import Dataset
        from peft import LoraConfig
        from trl import GRPOTrainer
    except ImportError as err:
        raise ConfigError(f"training needs the [train] extra ({err.name} is missing)") from None
    from therapygym.models.transformers_local import load_causal_lm
    from therapygym.rl.generation import policy_placement

    started = time.perf_counter()
    args = inputs.grpo_args
    place = Place.of(args)
    out = Path(config.output_dir)
    rewards_path = out / "rewards.jsonl"
    if place.is_main:
        if store is None:
            raise ValueError("the main process writes the rollouts: it needs the store")
        out.mkdir(parents=True, exist_ok=True)
    loop = BackgroundLoop()
    ledger = UsageLedger()
    patient_base = load_model(config.patient_model, cache=cache, models_file=models_file)
    judge_base = load_model(config.judge, cache=cache, models_file=models_file)
    eval_base = (
        None
        if config.eval_judge is None
        else load_model(config.eval_judge, cache=cache, models_file=models_file)
    )
    try:
        check_same_start(place, args.resume_from_checkpoint)
        record = run_record(config, inputs, place.count)

        def ensure_run() -> None:  # on the main process, which has the store (above)
            assert store is not None
            store.ensure_run(config.run_id, record)

        main_decides(place, ensure_run)
        if place.is_main:  # after the store accepted the run: a refused rerun changes nothing
            keep_reward_log(rewards_path, inputs.resumed_step)
        writer = None if place.count == 1 else GatheredStore(store if place.is_main else None)
        rollout = TherapyRollout(
            patient_model=AccountedModel(patient_base, "patient", ledger),
            rewarder=build_rewarder(
                config, inputs.reward, AccountedModel(judge_base, "judge", ledger)
            ),
            eval_rewarder=None
            if eval_base is None
            else build_rewarder(
                config, inputs.reward, AccountedModel(eval_base, "eval-judge", ledger)
            ),
            loop=loop,
            session=config.session,
            prompt=inputs.prompt,
            turn_tokens=config.turn_tokens,
            store=store if writer is None else writer,
            run_id=config.run_id,
        )
        rows = rollout.dataset(inputs.profiles, config.seeds)
        dtype, device = policy_placement(args)  # bf16 on a GPU when grpo: bf16 says so
        policy, tokenizer = load_causal_lm(config.model, dtype=dtype, device=device)
        tokenizer.padding_side = "left"
        policy.train()
        trainer = GRPOTrainer(
            model=policy,
            processing_class=tokenizer,
            reward_funcs=reward_functions(),
            args=args,
            train_dataset=Dataset.from_list(rows),
            rollout_func=rollout,
            peft_config=None
            if config.lora is None
            else LoraConfig(
                r=config.lora.r,
                lora_alpha=config.lora.alpha,
                lora_dropout=config.lora.dropout,
                target_modules=list(config.lora.target_modules),
                task_type="CAUSAL_LM",
            ),
            callbacks=[reward_log(rewards_path, console)]
            + ([] if writer is None else [flush_to_main(writer)]),
        )
        trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
        adapter = out / ("adapter" if config.lora else "model")  # full weights: a model folder
        # every process calls it (ZeRO-3 gathers the adapter's shards); the main one writes
        # the adapter and the tokenizer
        trainer.save_model(str(adapter))
        trainer.accelerator.wait_for_everyone()
        usage = ledger if place.count == 1 else gather_usage(ledger)
    finally:
        for model in (patient_base, judge_base, eval_base):
            if model is not None:
                loop.run(model.aclose())
        loop.close()
    return TrainResult(
        run_id=config.run_id,
        adapter=adapter,
        rewards=rewards_path,
        steps=trainer.state.global_step,
        wall_s=time.perf_counter() - started,
        usage=usage,
    )
