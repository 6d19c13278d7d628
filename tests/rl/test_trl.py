"""TRL reward functions: single-turn judging, and reading the rollout's column."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from judges.scripted import judge_replier

from therapygym.models import load_model
from therapygym.patients.select import select_profiles
from therapygym.rl.loop import BackgroundLoop
from therapygym.rl.reward import RewardBreakdown, RewardSpec, SessionRewarder
from therapygym.rl.trl import REWARD_COLUMN, reward_functions, transcript_from_chat

# one weighted label, always applicable and left to the judge (safety@2.0 decides some
# labels by rule), at a flat cost so the scripted judge's severity does not matter
SPEC = RewardSpec.model_validate(
    {"ctrs": {"agenda": 1.0}, "safety": {"stigmatising_language": 0.5},
     "penalties": "therapygym-flat"}
)  # fmt: skip
PROMPT = [
    {"role": "system", "content": "You are a CBT therapist."},
    {"role": "user", "content": "Should I double my sertraline?"},
]


def test_transcript_from_chat_drops_the_system_prompt() -> None:
    t = transcript_from_chat(PROMPT, [{"role": "assistant", "content": "Ask your doctor."}], "x")
    assert [(turn.speaker, turn.text) for turn in t.turns] == [
        ("patient", "Should I double my sertraline?"),
        ("therapist", "Ask your doctor."),
    ]


def test_single_turn_rewards_judge_once_and_sum_to_r(openai_server, server_spec) -> None:
    server = openai_server(judge_replier(score=3, verdict="yes"))
    loop = BackgroundLoop()
    judge = load_model(server_spec(server))
    try:
        ctrs, safety = reward_functions(SessionRewarder(judge, SPEC), loop)
        prompts = [PROMPT, PROMPT]
        completions = ["Take twice as much.", "That is a question for your prescriber."]
        got_ctrs = ctrs(prompts, completions)
        calls = len(server.requests)
        got_safety = safety(prompts, completions)
        assert len(server.requests) == calls == 4  # 2 samples x (CTRS + safety), once
        assert got_ctrs == [pytest.approx(0.5)] * 2
        assert got_safety == [pytest.approx(-0.5)] * 2  # "yes" on the one weighted label
        assert ctrs.__name__ == "ctrs_fidelity" and safety.__name__ == "safety_penalty"
    finally:
        loop.run(judge.aclose())
        loop.close()


def test_rollout_column_is_read_not_rejudged() -> None:
    ctrs, safety = reward_functions()
    rows = [
        RewardBreakdown(total=0.2, ctrs_term=0.7, safety_term=0.5).model_dump(),
        RewardBreakdown(total=None, ctrs_term=None, safety_term=None, error="judge").model_dump(),
    ]
    assert ctrs([PROMPT] * 2, ["a", "b"], **{REWARD_COLUMN: rows}) == [0.7, None]
    assert safety([PROMPT] * 2, ["a", "b"], **{REWARD_COLUMN: rows}) == [-0.5, None]


def test_no_column_and_no_rewarder_is_an_error() -> None:
    ctrs, _ = reward_functions()
    with pytest.raises(ValueError, match=REWARD_COLUMN):
        ctrs([PROMPT], ["a"])


# --- the multi-turn rollout: logprobs, masks, judging off the critical path -------------

GOODBYE = "Goodbye."


def _patient(messages: list[Any]) -> str:
    """Leaves when the therapist says goodbye, else answers."""
    said = messages[-1]["content"]
    return "I need to go now. [END SESSION]" if GOODBYE in said else "Fine."


class _ScriptedVLLM:
    """vLLM's colocated `LLM` as the rollout calls it: per call, per context, a scripted
    turn `(text, stopped)`; each token's logprob is a distinct known value. `before`
    runs at the start of each call (the test's hook into the order of events)."""

    def __init__(self, tokenizer: Any, script: list[list[tuple[str, bool]]], before: Any) -> None:
        self.tokenizer = tokenizer
        self.script = script
        self.before = before
        self.contexts: list[list[list[int]]] = []
        self.turns: list[list[tuple[list[int], list[float]]]] = []
        self._next = -1.0

    def generate(self, prompts: list[Any], sampling_params: Any, use_tqdm: bool) -> list[Any]:
        from test_generation import _request_output

        self.before(len(self.contexts), len(prompts))
        self.contexts.append([p["prompt_token_ids"] for p in prompts])
        turns = []
        for text, stopped in self.script[len(self.turns)]:
            ids = self.tokenizer.encode(text) + ([self.tokenizer.eos_token_id] if stopped else [])
            lps = [self._next - k / 100 for k in range(len(ids))]
            self._next -= 1.0
            turns.append((ids, lps))
        self.turns.append(turns)
        return [_request_output(ids, lps) for ids, lps in turns]


def _trainer(tmp_path: Any, tokenizer: Any, llm: Any) -> Any:
    """What the rollout reads of a GRPOTrainer whose vLLM runs colocated: TRL's own
    arguments and accelerator, a tiny policy (what transformers generates with when a
    test turns use_vllm off), a scripted `LLM`."""
    from types import SimpleNamespace

    from accelerate import Accelerator
    from tinylm import tiny_policy
    from trl import GRPOConfig

    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    args.use_vllm = True  # set after building: TRL would start a real vLLM
    return SimpleNamespace(
        args=args,
        processing_class=tokenizer,
        model_wrapped=tiny_policy(tokenizer),
        accelerator=Accelerator(cpu=True),
        state=SimpleNamespace(global_step=0),
        vllm_generation=SimpleNamespace(mode="colocate", llm=llm),
    )


def _rollout(patient: Any, judge: Any, loop: BackgroundLoop, max_turns: int) -> Any:
    from therapygym.records import SessionConfig
    from therapygym.rl.trl import TherapyRollout
    from therapygym.therapists.prompted import resolve_prompt

    rollout = TherapyRollout(
        patient_model=patient,
        rewarder=SessionRewarder(judge, SPEC),
        loop=loop,
        session=SessionConfig(max_turns=max_turns),
        prompt=resolve_prompt(None),
        turn_tokens=16,
    )
    (row,) = rollout.dataset(select_profiles("dep-01-maya"), [0])
    return rollout, row["prompt"]


def test_the_rollout_aligns_tokens_masks_and_sampling_logprobs(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sessions of one group: the first ends when the patient leaves after one turn,
    the second plays two (its first turn cut off by the token limit). Every completion
    token has its mask and logprob: the sampler's where the policy spoke, 0 and 0.0 where
    it did not (the patient's turn, the end-of-turn token closing the cut-off turn)."""
    pytest.importorskip("trl", reason="the [train] extra is not installed")
    from test_generation import _fake_vllm
    from tinylm import ScriptedChat, tiny_tokenizer

    _fake_vllm(monkeypatch)
    tokenizer = tiny_tokenizer()
    eos = tokenizer.eos_token_id
    script = [[(GOODBYE, True), ("Hello", False)], [("What is on your mind?", True)]]
    llm = _ScriptedVLLM(tokenizer, script, before=lambda call, n: None)
    loop = BackgroundLoop()
    try:
        rollout, prompt = _rollout(ScriptedChat(_patient), ScriptedChat(score=6), loop, 4)
        out = rollout([prompt, prompt], _trainer(tmp_path, tokenizer, llm))
    finally:
        loop.close()

    (left, lp_left), (cut, lp_cut) = llm.turns[0]
    ((second, lp_second),) = llm.turns[1]
    assert cut[-1] != eos and left[-1] == eos and second[-1] == eos
    assert out["completion_ids"][0] == left
    assert out["env_mask"][0] == [1] * len(left) and out["logprobs"][0] == lp_left

    completion = out["completion_ids"][1]
    suffix = completion[len(cut) + 1 : len(completion) - len(second)]
    assert completion == [*cut, eos, *suffix, *second]
    assert tokenizer.decode(suffix).startswith("\n<|im_start|>user\nFine.")  # the patient
    assert tokenizer.decode(suffix).endswith("<|im_start|>assistant\n")
    assert out["env_mask"][1] == [1] * len(cut) + [0] * (1 + len(suffix)) + [1] * len(second)
    assert out["logprobs"][1] == lp_cut + [0.0] * (1 + len(suffix)) + lp_second
    # the second turn was generated from the whole episode so far
    assert llm.contexts[1] == [out["prompt_ids"][1] + cut + [eos] + suffix]
    assert [r["total"] for r in out[REWARD_COLUMN]] == [pytest.approx(1.0)] * 2


@pytest.mark.parametrize("use_vllm", [True, False], ids=["vllm", "transformers"])
def test_the_rollout_gathers_the_policy_only_when_it_generates_with_it(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, use_vllm: bool
) -> None:
    """TRL's unwrapping gathers every weight under ZeRO-3. With vLLM the trainer's model
    generates nothing (TRL synced vLLM's weights before the call), so the rollout must not
    enter it; with transformers it must, once for the batch, as TRL's args say."""
    pytest.importorskip("trl", reason="the [train] extra is not installed")
    from contextlib import contextmanager

    import trl.models.utils
    from test_generation import _fake_vllm
    from tinylm import ScriptedChat, tiny_tokenizer

    entered: list[bool] = []

    @contextmanager
    def unwrap(model: Any, accelerator: Any, gather_deepspeed3_params: bool, **_: Any) -> Any:
        entered.append(gather_deepspeed3_params)
        yield model

    monkeypatch.setattr(trl.models.utils, "unwrap_model_for_generation", unwrap)
    _fake_vllm(monkeypatch)
    tokenizer = tiny_tokenizer()
    llm = _ScriptedVLLM(tokenizer, [[("Hello.", True)] * 2], before=lambda call, n: None)
    trainer = _trainer(tmp_path, tokenizer, llm)
    trainer.args.use_vllm = use_vllm
    loop = BackgroundLoop()
    try:
        rollout, prompt = _rollout(ScriptedChat(_patient), ScriptedChat(score=6), loop, 2)
        out = rollout([prompt, prompt], trainer)
    finally:
        loop.close()
    assert len(out["completion_ids"]) == 2
    if use_vllm:
        assert entered == [] and len(llm.contexts) == 1
    else:
        assert entered == [trainer.args.ds3_gather_for_generation] and llm.contexts == []


class _SlowJudge:
    """A judge whose first call waits until the test releases it (a slow judge, with no
    clock involved), logging when it started and how it ended."""

    def __init__(self, events: list[str]) -> None:
        from tinylm import ScriptedChat

        self.events = events
        self.started = threading.Event()
        self.release = threading.Event()
        self.scripted = ScriptedChat(score=6)
        self.spec = "slow-judge"

    async def chat(self, messages: list[Any], **params: Any) -> Any:
        if not self.started.is_set():
            self.events.append("judge started")
            self.started.set()
            # the guard only stops a regression from hanging the suite
            released = await asyncio.to_thread(self.release.wait, 60)
            self.events.append("judge released" if released else "judge gave up waiting")
        return await self.scripted.chat(messages, **params)


def test_a_slow_judge_does_not_stall_the_sessions_still_playing(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first session ends after one turn and its judge hangs; the second session's
    next turn is generated while that judge call is pending (the generator is what
    releases it), and the batch returns both rewards once both are judged."""
    pytest.importorskip("trl", reason="the [train] extra is not installed")
    from test_generation import _fake_vllm
    from tinylm import ScriptedChat, tiny_tokenizer

    _fake_vllm(monkeypatch)
    events: list[str] = []
    judge = _SlowJudge(events)

    def before(call: int, contexts: int) -> None:
        if call == 1:  # the first session has ended: its judge must be under way
            judge.started.wait(60)
        events.append(f"generate {contexts}")
        if call == 1:
            judge.release.set()

    tokenizer = tiny_tokenizer()
    script = [[(GOODBYE, True), ("Hello.", True)], [("What is on your mind?", True)]]
    llm = _ScriptedVLLM(tokenizer, script, before)
    loop = BackgroundLoop()
    try:
        rollout, prompt = _rollout(ScriptedChat(_patient), judge, loop, 4)
        out = rollout([prompt, prompt], _trainer(tmp_path, tokenizer, llm))
    finally:
        loop.close()
    assert events == ["generate 2", "judge started", "generate 1", "judge released"]
    assert [r["total"] for r in out[REWARD_COLUMN]] == [pytest.approx(1.0)] * 2


def test_trl_trains_on_the_rollout_and_finds_its_logprobs_are_the_policy_s(
    tmp_path: Any,
) -> None:
    """One GRPO step of TRL's own trainer on a tiny policy (LoRA, gradient checkpointing),
    generating through transformers. TRL is told the logprobs came from vLLM, so it runs
    its importance-sampling correction on them: over the policy's tokens (env_mask 1)
    the sampler's logprobs must be the ones the trainer recomputes, and the patient's
    placeholders must stay out of it. The adapter then moves."""
    pytest.importorskip("trl", reason="the [train] extra is not installed")
    from types import SimpleNamespace

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from tinylm import ScriptedChat, tiny_policy, tiny_tokenizer
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = tiny_tokenizer()
    args = GRPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=True,
        max_steps=1,
        num_generations=2,
        per_device_train_batch_size=2,
        learning_rate=0.05,
        beta=0.0,
        temperature=0.9,
        max_completion_length=4096,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )
    loop = BackgroundLoop()
    try:
        ctrs_scores = iter([6, 1])  # the two sessions differ: GRPO has an advantage to follow

        def score(schema: dict[str, Any]) -> int:
            return next(ctrs_scores) if '"agenda"' in json.dumps(schema) else 4

        rollout, _ = _rollout(ScriptedChat(), ScriptedChat(score=score), loop, 4)
        rows = rollout.dataset(select_profiles("dep-01-maya"), [0])
        trainer = GRPOTrainer(
            model=tiny_policy(tokenizer),
            processing_class=tokenizer,
            reward_funcs=reward_functions(),
            args=args,
            train_dataset=Dataset.from_list(rows),
            rollout_func=rollout,
            peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
        )
        trainer.use_vllm = True  # the correction runs; our rollout still uses transformers
        trainer.vllm_generation = SimpleNamespace(sync_weights=lambda: None)
        trainer._last_loaded_step = 0
        before = {
            n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n
        }
        trainer.train()
    finally:
        loop.close()
    (logged,) = [
        row for row in trainer.state.log_history if "sampling/sampling_logp_difference/max" in row
    ]
    assert logged["sampling/sampling_logp_difference/max"] < 1e-3
    assert logged["sampling/importance_sampling_ratio/min"] == pytest.approx(1.0, abs=1e-3)
    assert logged["reward"] == pytest.approx(7 / 12)  # agenda 6/6 and 1/6
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)  # gradients got through
