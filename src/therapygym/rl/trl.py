"""TRL glue: reward functions for `GRPOTrainer`, and a multi-turn rollout through its
`rollout_func` hook. Built against TRL 1.16 (`rollout_func` is experimental there).

Reward functions are plain `f(prompts, completions, **columns) -> list[float | None]`.
`reward_functions(...)` returns two, `ctrs_fidelity` and `safety_penalty`, whose sum is
TherapyGym's R; TRL logs each under its name, so the trade-off is visible step by step,
and the judges run once per sample for both. They work two ways:

- single-turn GRPO: the prompt (a conversation, the patient speaking last) plus the
  completion (one therapist reply) is judged as a session;
- with `TherapyRollout`: the rollout already judged each whole session and passes its
  breakdown in the `therapygym_reward` column; the functions only read it.

`TherapyRollout` plays whole sessions: the policy (the trainer's model) speaks as the
therapist, a frozen chat model (any spec) plays the patient through `rl/env.py`. The
completion is every token after the prompt; the patient's turns (rendered with the
policy's chat template) are in it for context but carry `env_mask` 0, so only the
therapist's tokens are in the loss. Each turn comes from `rl/generation.py` (transformers,
or TRL's vLLM engine) with the logprobs it was sampled with, which TRL's importance-sampling
correction reads. Each session is judged as it ends, while the others keep generating. A
failed judge gives None (TRL skips that sample) and the cause is logged, never a made-up 0.

An evaluation judge (`eval_rewarder`) scores the same finished sessions and never enters the
loss: its R travels in the `therapygym_eval_reward` column and `ctrs_fidelity` logs its
means through TRL's `log_metric` (`eval_judge/reward`, `eval_judge/ctrs_fidelity`,
`eval_judge/safety_penalty`), at the step whose reward they sit beside. A policy learns
what its own judge likes; a reward that rises while a judge it never trained on stays flat
is that, made visible.

The policy sees the conversation as a prompted therapist does (`TherapistPrompt`): with our
prompt, each patient message ends with its turn note. Notes are appended, never rewritten,
so the episode stays one token sequence. Every rendering of it takes TRL's
`chat_template_kwargs` (`{enable_thinking: false}` turns Qwen3's thinking off); a `<think>`
block the policy writes stays in its completion and is cut from what the patient and the
judges see (`visible_reply`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from therapygym.models import ChatModel
from therapygym.models.base import split_reasoning
from therapygym.patients.profile import PatientProfile
from therapygym.records import ScoreRecord, SessionConfig, SessionStatus, Transcript, turns_of
from therapygym.rl.env import TherapyEnv
from therapygym.rl.generation import Generator, rollout_generator
from therapygym.rl.loop import BackgroundLoop
from therapygym.rl.ranks import GatheredStore, Place, session_id
from therapygym.rl.reward import RewardBreakdown, SessionRewarder
from therapygym.store import RunStore
from therapygym.therapists.prompted import TherapistPrompt

log = logging.getLogger(__name__)

REWARD_COLUMN = "therapygym_reward"
EVAL_COLUMN = "therapygym_eval_reward"  # the evaluation judge's breakdowns: logged, never a reward
EVAL_METRIC = "eval_judge"  # prefix of the evaluation judge's metrics in TRL's logs
TRL_VERSION = "1.16.0"  # what this module is built and tested against


def _prompt_key(prompt: list[dict[str, str]]) -> str:
    return json.dumps([[m["role"], m["content"]] for m in prompt], ensure_ascii=False)


def transcript_from_chat(
    prompt: list[dict[str, str]], completion: str | list[dict[str, str]], session_id: str
) -> Transcript:
    """A prompt conversation (user = patient, assistant = therapist, system dropped) and
    the therapist's completion, as a transcript the judges can read."""
    reply = completion if isinstance(completion, str) else completion[-1]["content"]
    said = [m for m in prompt if m["role"] in ("user", "assistant")]
    said.append({"role": "assistant", "content": reply})
    turns = turns_of(
        session_id,
        (("patient" if m["role"] == "user" else "therapist", m["content"]) for m in said),
    )
    return Transcript(
        session_id=session_id,
        profile_id="trl-prompt",
        therapist="policy",
        patient="dataset",
        status="completed",
        turns=turns,
    )


class _Rewards:
    """The judged breakdowns of the current batch, shared by both reward functions."""

    def __init__(self, rewarder: SessionRewarder | None, loop: BackgroundLoop | None) -> None:
        self.rewarder = rewarder
        self.loop = loop
        self._batch: dict[tuple[str, str], RewardBreakdown] = {}

    def breakdowns(
        self, prompts: list[Any], completions: list[Any], columns: dict[str, Any]
    ) -> list[RewardBreakdown]:
        if REWARD_COLUMN in columns:
            return [RewardBreakdown.model_validate(b) for b in columns[REWARD_COLUMN]]
        if self.rewarder is None or self.loop is None:
            raise ValueError(
                f"no '{REWARD_COLUMN}' column (TherapyRollout) and no rewarder to judge with"
            )
        keys = [(_prompt_key(p), json.dumps(c)) for p, c in zip(prompts, completions, strict=True)]
        todo = {k: (p, c) for k, p, c in zip(keys, prompts, completions, strict=True)}
        todo = {k: v for k, v in todo.items() if k not in self._batch}
        if todo:
            wanted = set(keys)
            self._batch = {k: v for k, v in self._batch.items() if k in wanted}
            transcripts = [
                transcript_from_chat(p, c, f"trl:{i}") for i, (p, c) in enumerate(todo.values())
            ]
            scored = self.loop.gather(self.rewarder.score(t) for t in transcripts)
            self._batch.update(zip(todo, (b for b, _ in scored), strict=True))
        return [self._batch[k] for k in keys]


def _mean(values: list[float | None]) -> float:
    """The mean of the values judged; NaN when none was (TRL logs that step's value as None)."""
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else math.nan


def log_eval_judge(columns: dict[str, Any]) -> None:
    """Log the evaluation judge's means for this batch through TRL's `log_metric`, on the
    reward functions' own signs: R, its CTRS term, and minus its safety term."""
    log_metric = columns.get("log_metric")
    if EVAL_COLUMN not in columns or log_metric is None:
        return
    scored = [RewardBreakdown.model_validate(b) for b in columns[EVAL_COLUMN]]
    for b in scored:
        if b.error:
            log.warning("evaluation judge failed: %s", b.error)
    log_metric(f"{EVAL_METRIC}/reward", _mean([b.total for b in scored]))
    log_metric(f"{EVAL_METRIC}/ctrs_fidelity", _mean([b.ctrs_term for b in scored]))
    safety = [None if b.safety_term is None else -b.safety_term for b in scored]
    log_metric(f"{EVAL_METRIC}/safety_penalty", _mean(safety))


def reward_functions(
    rewarder: SessionRewarder | None = None, loop: BackgroundLoop | None = None
) -> list[Callable[..., list[float | None]]]:
    """[ctrs_fidelity, safety_penalty] for `GRPOTrainer(reward_funcs=...)`; their sum is R.
    With an evaluation judge's column, `ctrs_fidelity` also logs that judge's means
    (`log_eval_judge`); they are not rewards."""
    shared = _Rewards(rewarder, loop)

    def _report(breakdowns: list[RewardBreakdown]) -> None:
        for b in breakdowns:
            if b.error:
                log.warning("reward skipped: %s", b.error)

    def ctrs_fidelity(prompts: list[Any], completions: list[Any], **columns: Any) -> list[Any]:
        """sum_i w_i * CTRS_i / 6 (0 to the sum of the weights)."""
        breakdowns = shared.breakdowns(prompts, completions, columns)
        _report(breakdowns)
        log_eval_judge(columns)
        return [b.ctrs_term for b in breakdowns]

    def safety_penalty(prompts: list[Any], completions: list[Any], **columns: Any) -> list[Any]:
        """-sum_j lambda_j * violation_j (0 when no label is violated)."""
        breakdowns = shared.breakdowns(prompts, completions, columns)
        return [None if b.safety_term is None else -b.safety_term for b in breakdowns]

    return [ctrs_fidelity, safety_penalty]


def patient_turn_tokens(
    tokenizer: Any,
    messages: list[dict[str, str]],
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> list[int]:
    """The last (patient) message as the policy's chat template renders it after the
    therapist's end-of-turn token, through the next assistant header (with what
    `chat_template_kwargs` adds there, such as Qwen3's empty think block): the tokens a
    rollout appends, masked, between two therapist turns.

    The cut is found in the rendering of the whole conversation, after as many
    end-of-turn tokens as the conversation without the patient's message holds, and not
    by comparing the two renderings: some templates render the last assistant message
    otherwise than an earlier one (Qwen3 gives it an empty think block only while it is
    last). The episode's tokens are appended, never re-rendered, so only this suffix is
    taken from the template; the cut must fall right after the therapist's reply."""
    kwargs = dict(chat_template_kwargs or {})
    full = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, **kwargs
    )
    before = tokenizer.apply_chat_template(messages[:-1], tokenize=False, **kwargs)
    eos = tokenizer.eos_token
    turns = before.count(eos)
    parts = full.split(eos)
    head = eos.join(parts[:turns]) + eos
    if turns == 0 or len(parts) <= turns or not head.endswith(messages[-2]["content"] + eos):
        raise RuntimeError(
            "the policy's chat template does not end the therapist's turn with its "
            f"end-of-turn token ({eos})"
        )
    return list(tokenizer(full[len(head) :], add_special_tokens=False)["input_ids"])


def visible_reply(text: str) -> str:
    """What the patient and the judges are shown of a policy turn: a reasoning block
    (`<think>...</think>`, Qwen3's) is the policy's own, so only the text after its
    `</think>` is said, as Qwen3's template itself keeps of an earlier assistant message;
    a turn cut off inside one says nothing (so the rollout says "..."). The rule is the
    model layer's `split_reasoning`, so a trained policy is rewarded on what its replies
    show when it is evaluated (`hf:`). The block's tokens stay in the completion and in
    the loss."""
    return split_reasoning(text)[0].strip()


def _failed(cause: str | None) -> RewardBreakdown:
    return RewardBreakdown(
        total=None, ctrs_term=None, safety_term=None, error=f"session failed: {cause}"
    )


def _reward_of(env: TherapyEnv, info: dict[str, Any]) -> RewardBreakdown:
    """The breakdown `TherapyEnv.score` judged at the episode's end, or why there is none."""
    return info.get("reward") or _failed(info.get("error") or env.transcript.error)


@dataclass(frozen=True)
class Judged:
    """One ended session's judging: the reward judge's breakdown, the evaluation judge's
    (None without one), and the score records of both."""

    reward: RewardBreakdown
    evaluated: RewardBreakdown | None
    records: list[ScoreRecord]


@dataclass(frozen=True)
class Episode:
    """One dataset row: a profile, a seed, and the patient's opening line."""

    profile: PatientProfile
    seed: int
    opening: str


class TherapyRollout:
    """`rollout_func` for GRPOTrainer: whole sessions, the patient a frozen model."""

    def __init__(
        self,
        *,
        patient_model: ChatModel,
        rewarder: SessionRewarder,
        loop: BackgroundLoop,
        session: SessionConfig,
        prompt: TherapistPrompt | None,
        turn_tokens: int = 128,
        store: RunStore | GatheredStore | None = None,  # GatheredStore: several processes
        run_id: str = "train",
        eval_rewarder: SessionRewarder | None = None,
    ) -> None:
        self.patient_model = patient_model
        self.rewarder = rewarder
        self.eval_rewarder = eval_rewarder
        self.loop = loop
        self.session = session
        self.prompt = prompt
        self.turn_tokens = turn_tokens
        self.store = store
        self.run_id = run_id
        self._episodes: dict[str, Episode] = {}
        self._per_step: dict[int, int] = defaultdict(int)
        self._told_thinking = False  # the <think> warning is logged once per run

    def _env(self) -> TherapyEnv:
        return TherapyEnv(
            self.patient_model, self.rewarder, config=self.session, run_id=self.run_id
        )

    def dataset(self, profiles: Sequence[PatientProfile], seeds: Sequence[int]) -> list[dict]:
        """Rows for the trainer: each profile x seed, its opening asked once (so every
        rollout of a GRPO group starts from the same line)."""
        rows = []
        for profile in profiles:
            for seed in seeds:
                env = self._env()
                opening, _ = self.loop.run(env.reset(profile, seed))
                prompt = env.messages(self.prompt)
                self._episodes[_prompt_key(prompt)] = Episode(profile, seed, opening)
                rows.append({"prompt": prompt, "profile_id": profile.id, "seed": seed})
        return rows

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        if trainer.args.use_vllm:
            # vLLM generates every turn, and TRL pushed this step's weights into it before
            # calling us (gathering ZeRO-3's shards for that itself): the trainer's model is
            # not used, so gathering its full weights here would only hold a second copy
            return self._rollout(prompts, trainer, None)
        from trl.models.utils import unwrap_model_for_generation

        # TRL's unwrapping, once for the whole batch: under ZeRO-3 it gathers the weights
        # (a collective), so each rank then generates its sessions' turns alone, however
        # many turns each takes; unwrapping per turn would leave ranks waiting on each other
        with unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
        ) as model:
            return self._rollout(prompts, trainer, model)

    def _rollout(self, prompts: list[Any], trainer: Any, model: Any) -> dict[str, Any]:
        tokenizer = trainer.processing_class
        step = trainer.state.global_step
        envs = [self._env() for _ in prompts]
        place = Place.of(trainer.args)  # ids unique across processes (rl/ranks.py)
        ids = []
        for env, prompt in zip(envs, prompts, strict=True):
            episode = self._episodes.get(_prompt_key(prompt))
            if episode is None:
                raise ValueError(
                    "a prompt the rollout did not make: build the dataset with .dataset()"
                )
            self._per_step[step] += 1
            ids.append(session_id(self.run_id, step, self._per_step[step], place))
            self.loop.run(
                env.reset(
                    episode.profile, episode.seed, session_id=ids[-1], opening=episode.opening
                )
            )
        generator = rollout_generator(trainer, model, self.turn_tokens)
        # TRL's own setting, so the rollout renders what TRL would (it renders nothing
        # itself for a rollout_func); `train` sets it from the config's chat_template_kwargs
        return self.play(envs, ids, generator, tokenizer, trainer.args.chat_template_kwargs)

    def play(
        self,
        envs: list[TherapyEnv],
        ids: list[str],
        generator: Generator,
        tokenizer: Any,
        chat_template_kwargs: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Play the reset sessions to their ends and return TRL's rollout output.

        Each turn, every session still going gets one policy turn from `generator` (with
        the logprob each token was sampled with) and the patient's answer. A session is
        judged as it ends, on the background loop, while the others keep generating; the
        batch waits for its judges only at the end. The completion's tokens that the
        policy did not sample (the patient's turns, an end-of-turn token closing a cut-off
        turn) carry env_mask 0 and logprob 0.0, as TRL's own tool loop fills them: TRL
        masks them out of the loss and of its importance-sampling correction.

        Every rendering of the policy's conversation (the prompt, each patient turn) takes
        `chat_template_kwargs`; what the patient and judges see of a turn is its
        `visible_reply`.
        """
        eos = tokenizer.eos_token_id
        template = dict(chat_template_kwargs or {})
        prompt_ids = [self._encode(tokenizer, env.messages(self.prompt), template) for env in envs]
        completion_ids: list[list[int]] = [[] for _ in envs]
        env_mask: list[list[int]] = [[] for _ in envs]
        logprobs: list[list[float]] = [[] for _ in envs]

        def extend(i: int, tokens: list[int], sampled: list[float] | None) -> None:
            completion_ids[i] += tokens
            env_mask[i] += [0 if sampled is None else 1] * len(tokens)
            logprobs[i] += [0.0] * len(tokens) if sampled is None else sampled

        judging: dict[int, Future[Judged]] = {}
        active = list(range(len(envs)))
        try:
            while active:
                turns = generator.generate([prompt_ids[i] + completion_ids[i] for i in active])
                texts = []
                for i, turn in zip(active, turns, strict=True):
                    if len(turn.logprobs) != len(turn.token_ids):
                        raise RuntimeError(
                            f"the generation backend gave {len(turn.logprobs)} logprobs for "
                            f"{len(turn.token_ids)} tokens"
                        )
                    extend(i, turn.token_ids, turn.logprobs)
                    if not turn.token_ids or turn.token_ids[-1] != eos:  # cut off: close it
                        extend(i, [eos], None)
                    text = tokenizer.decode(turn.token_ids, skip_special_tokens=True).strip()
                    shown = visible_reply(text)
                    if shown != text and not self._told_thinking:
                        self._told_thinking = True
                        log.warning(
                            "the policy thinks (<think> blocks): the patient and judges see "
                            "only the text after </think>; chat_template_kwargs: "
                            "{enable_thinking: false} trains replies without them"
                        )
                    texts.append(shown or "...")
                steps = self.loop.gather(
                    envs[i].step(text, judge=False) for i, text in zip(active, texts, strict=True)
                )
                still = []
                for i, (_, _, terminated, truncated, _) in zip(active, steps, strict=True):
                    if terminated or truncated:
                        judging[i] = asyncio.run_coroutine_threadsafe(
                            self.judge(envs[i]), self.loop.loop
                        )
                        continue
                    said = envs[i].messages(self.prompt)
                    extend(i, patient_turn_tokens(tokenizer, said, template), None)
                    still.append(i)
                active = still
            judged = [judging[i].result() for i in range(len(envs))]
        finally:  # a failed batch leaves no judge running behind it
            for pending in judging.values():
                pending.cancel()
        breakdowns, evaluated = self.finish(envs, judged)
        out = {
            "prompt_ids": prompt_ids,
            "completion_ids": completion_ids,
            "logprobs": logprobs,
            "env_mask": env_mask,
            REWARD_COLUMN: [b.model_dump() for b in breakdowns],
            "session_id": ids,
        }
        if evaluated is not None:
            out[EVAL_COLUMN] = [b.model_dump() for b in evaluated]
        return out

    async def judge(self, env: TherapyEnv) -> Judged:
        """An ended session judged by the reward judge and, with one, the evaluation judge
        (the two at once)."""
        if self.eval_rewarder is None:
            _, info = await env.score()
            return Judged(_reward_of(env, info), None, list(info.get("records", [])))
        (_, info), (evaluated, theirs) = await asyncio.gather(env.score(), self._evaluate(env))
        return Judged(_reward_of(env, info), evaluated, [*info.get("records", []), *theirs])

    def finish(
        self, envs: list[TherapyEnv], judged: list[Judged]
    ) -> tuple[list[RewardBreakdown], list[RewardBreakdown] | None]:
        """The ended episodes' reward breakdowns and, with an evaluation judge, that
        judge's; each session is stored with both and every score record."""
        breakdowns = [j.reward for j in judged]
        evaluated = [j.evaluated for j in judged if j.evaluated is not None]
        if self.store is not None:
            for env, j in zip(envs, judged, strict=True):
                env.transcript.meta["reward"] = j.reward.model_dump()
                if j.evaluated is not None:
                    env.transcript.meta["eval_reward"] = j.evaluated.model_dump()
                self.store.save_session(env.transcript)
                for record in j.records:
                    self.store.save_scores([record])
        return breakdowns, evaluated if self.eval_rewarder is not None else None

    async def _evaluate(self, env: TherapyEnv) -> tuple[RewardBreakdown, list[ScoreRecord]]:
        assert self.eval_rewarder is not None
        if env.transcript.status == SessionStatus.FAILED:
            return _failed(env.transcript.error), []
        return await self.eval_rewarder.score(env.transcript)

    @staticmethod
    def _encode(
        tokenizer: Any, messages: list[dict[str, str]], chat_template_kwargs: dict[str, Any]
    ) -> list[int]:
        encoded = tokenizer.apply_chat_template(
            messages,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            **chat_template_kwargs,
        )
        return list(encoded["input_ids"])
