"""The therapy environment for the `verifiers` library (0.4.0, its `verifiers.v1` API).

verifiers drives the policy, we drive the patient and the reward: one `Env` subclass
whose `run(task, agents)` relays between verifiers' therapist agent (the model under
evaluation or training, through verifiers' own client and interception) and
`rl/env.py`'s `TherapyEnv` (our patient simulator on any model spec, and the session
loop with its stopping rules). Nothing here re-implements the session: each therapist
segment goes to `TherapyEnv.step`, each patient reply back to `Interaction.turn`. The
reward is `SessionRewarder`'s R, recorded in `finalize` as the trace's one reward
(`therapygym_r`), its terms and items as metrics, so verifiers logs what moved.

The therapist agent is told what a prompted therapist is told: the system prompt (ours by
default, set per episode for the env's session) and, with ours, the turn note at the end of
each patient line it receives (`therapists/prompted.py`).

verifiers needs `openai<3` and our dev extra `openai>=3`, so it lives in its own venv
(`make test-verifiers` builds `.vfenv`: verifiers==0.4.0 plus therapygym, and tests this).

verifiers loads a taskset by importing a top-level module named by its id, so the wheel
ships `therapygym_verifiers` (id `therapygym-verifiers`), which re-exports this module's
taskset and env: a verifiers or prime-rl config names the env by that id, and Python can
build it directly (`TherapyVerifiersEnv(TherapyVerifiersConfig())`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

try:
    import verifiers.v1 as vf
except ImportError as err:  # pragma: no cover - exercised only without verifiers
    raise ImportError(
        "therapygym.rl.verifiers needs verifiers 0.4.0 in its own venv "
        "(it requires openai<3): pip install verifiers==0.4.0"
    ) from err

from pydantic import Field

from therapygym.judges.safety import SafetyMode
from therapygym.judges.severity import rank
from therapygym.models import BaseChatModel, load_model
from therapygym.patients.select import select_profiles
from therapygym.records import SessionConfig
from therapygym.rl.env import TherapyEnv
from therapygym.rl.reward import RewardBreakdown, SessionRewarder, load_reward_spec
from therapygym.therapists.prompted import TherapistPrompt, resolve_prompt

VERIFIERS_VERSION = "0.4.0"  # what this module is built and tested against
TASKSET_ID = "therapygym-verifiers"
REWARD_NAME = "therapygym_r"
THERAPIST = "therapist"


class TherapyTaskData(vf.TaskData):
    """One episode: a patient profile, a seed, and optionally the opening to replay (so
    every rollout of a group starts from the same words)."""

    profile_id: str
    seed: int = 0
    opening: str | None = None


class TherapyTask(vf.Task[TherapyTaskData]):
    """No task-side scoring: the session's R is recorded by the env once the patient
    side (which verifiers does not see) is over."""


class TherapyTasksetConfig(vf.TasksetConfig):
    id: str = TASKSET_ID
    patients: str = Field("all", description="A patient selector, as for `run --patients`.")
    seeds: list[int] = Field(default_factory=lambda: [0])
    therapist_prompt: str | None = Field(
        None,
        description="A file, 'none', or 'no-turn-info'; default: our CBT prompt with turn notes.",
    )


class TherapyTaskset(vf.Taskset[TherapyTask, TherapyTasksetConfig]):
    """Profiles x seeds. The patient's situation does not ride on a task (the therapist
    learns it only by asking), nor does our system prompt: a prompt may depend on the
    session's length, which is the env's, so the env sets it on each episode's task."""

    def load(self) -> Iterator[TherapyTask]:
        cfg = self.config
        for profile in select_profiles(cfg.patients):
            for seed in cfg.seeds:
                data = TherapyTaskData(
                    id=f"{profile.id}:{seed}",
                    name=profile.id,
                    prompt=None,  # the patient opens, through the first turn
                    profile_id=profile.id,
                    seed=seed,
                )
                yield TherapyTask(data, cfg.task)


class TherapyVerifiersConfig(vf.EnvConfig):
    """The env block. The therapist seat is verifiers' (`--env.therapist.*`); the patient
    and judge are our model specs, frozen. The tool-less `null` harness runs nothing but
    a chat loop, so the local subprocess runtime is the default."""

    taskset: TherapyTasksetConfig = TherapyTasksetConfig()
    therapist: vf.AgentConfig = vf.AgentConfig(
        harness={"id": "null"}, runtime={"type": "subprocess"}
    )
    patient_model: str = "local:smollm2"
    judge: str = "local:smollm2"
    judge_safety_mode: SafetyMode = Field(
        "one_call", description="safety@2.0 in one call, or per_group (8k-context judges)."
    )
    judge_examples: bool = Field(
        True, description="ctrs@2.0: show the judge the rubric's skill examples."
    )
    models_file: str | None = None
    reward_weights: str | None = None
    judge_samples: int = Field(1, ge=1)
    judge_concurrency: int = Field(8, ge=1)
    session: SessionConfig = SessionConfig()


def _metrics(breakdown: RewardBreakdown) -> dict[str, float]:
    """R's parts as flat metrics: both terms, every CTRS item, every safety label, and per
    violated label its severity (as its rank: 1 low .. 4 critical) and what it cost, so a
    falling safety term can be read as fewer violations or milder ones."""
    out = {"ctrs_term": breakdown.ctrs_term, "safety_term": breakdown.safety_term}
    out |= {f"ctrs/{k}": v for k, v in breakdown.items.items()}
    out |= {f"safety/{k}": float(v) for k, v in breakdown.violations.items()}
    out |= {f"severity/{k}": float(rank(v)) for k, v in breakdown.severities.items()}
    out |= {f"safety_penalty/{k}": v for k, v in breakdown.penalties.items()}
    return {k: float(v) for k, v in out.items() if v is not None}


class TherapyVerifiersEnv(vf.Env[TherapyVerifiersConfig]):
    """verifiers' therapist agent against our simulated patient; R from our judges."""

    def __init__(self, config: TherapyVerifiersConfig) -> None:
        super().__init__(config)
        self.prompt = resolve_prompt(config.taskset.therapist_prompt)
        self.patient_model: BaseChatModel | None = None
        self.judge_model: BaseChatModel | None = None
        self.rewarder: SessionRewarder | None = None
        self._results: dict[str, tuple[float, dict[str, Any]]] = {}

    async def start(self) -> None:
        """Load the frozen models once per `serving()`, on the loop that will use them."""
        cfg = self.config
        self.patient_model = load_model(cfg.patient_model, models_file=cfg.models_file)
        self.judge_model = load_model(cfg.judge, models_file=cfg.models_file)
        self.rewarder = SessionRewarder(
            self.judge_model,
            load_reward_spec(cfg.reward_weights),
            samples=cfg.judge_samples,
            concurrency=cfg.judge_concurrency,
            safety_mode=cfg.judge_safety_mode,
            examples=cfg.judge_examples,
        )

    async def stop(self) -> None:
        """Close the models' HTTP sessions with the loop that opened them."""
        for model in (self.patient_model, self.judge_model):
            if model is not None:
                await model.aclose()
        self.patient_model = self.judge_model = self.rewarder = None

    def therapy_env(self) -> TherapyEnv:
        """A fresh `TherapyEnv` per episode: episodes run concurrently, models are shared."""
        if self.patient_model is None:
            raise RuntimeError("run episodes inside `async with env.serving():`")
        return TherapyEnv(self.patient_model, self.rewarder, config=self.config.session)

    def therapist_prompt(self, task: vf.Task) -> TherapistPrompt | None:
        """What the therapist agent's system prompt is: verifiers' own override
        (`taskset.system_prompt`, a plain text without turn notes) when a task carries one,
        else ours (`taskset.therapist_prompt`)."""
        given = task.data.system_prompt
        return self.prompt if given is None else TherapistPrompt(given)

    async def run(self, task: vf.Task, agents: vf.Agents) -> None:
        """Relay: the patient's line (with its turn note, as a prompted therapist sees it)
        is the therapist agent's user turn, its reply is `TherapyEnv.step`'s input, until
        the session (not the agent) says it is over."""
        data: TherapyTaskData = task.data  # type: ignore[assignment]
        (profile,) = select_profiles(data.profile_id)
        env = self.therapy_env()
        prompt = self.therapist_prompt(task)
        if prompt is not None and data.system_prompt is None:
            task = task.with_system_prompt(prompt.system(env.config))
        await env.reset(profile, data.seed, opening=data.opening)
        async with agents.therapist.interaction(task) as therapist:
            while True:
                segment = await therapist.turn(env.messages(prompt)[-1]["content"])
                if segment.terminated:  # the agent's own limit or its model failed
                    stop = therapist.trace.stop_condition
                    reward, info = math.nan, {"error": f"the therapist agent stopped ({stop})"}
                    break
                _said, reward, terminated, truncated, info = await env.step(segment.last_reply)
                if terminated or truncated:
                    break
        info["status"] = env.transcript.status
        info["patient_turns"] = sum(t.speaker == "patient" for t in env.transcript.turns)
        self._results[therapist.trace.id] = (reward, info)

    async def finalize(self, task: vf.Task, episode: vf.Episode) -> None:
        """Record R on the therapist's trace. A session without R (a judge or the patient
        model failed) fails the episode with the cause: never a made-up 0."""
        for trace in episode.traces:
            if trace.agent.name != THERAPIST or trace.id not in self._results:
                continue
            reward, info = self._results.pop(trace.id)
            breakdown: RewardBreakdown | None = info.get("reward")
            if math.isnan(reward) or breakdown is None:
                cause = breakdown.error if breakdown is not None else info.get("error")
                raise RuntimeError(f"no reward for {task.data.id}: {cause}")
            trace.record_reward(REWARD_NAME, reward)
            trace.record_metrics(_metrics(breakdown))
            trace.record_metric("patient_turns", info["patient_turns"])


__all__ = ["TherapyTaskset", "TherapyVerifiersEnv"]
