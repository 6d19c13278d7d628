"""GRPO's reward for a judge: agreement with the experts on what each call asks.

A CTRS answer earns minus the mean absolute error of its item scores against the experts'
mean (0 is perfect, -6 the worst a valid answer can do; an item answered displaced_by_risk
that the experts scored counts as the scale's whole range, 6). A safety answer earns the
share of expert-labelled labels whose verdict, after the rubric's own per-label rules
(`safety_rules.label_result`), matches the experts' (yes = violated, no = not; not
applicable matches neither). Output that is not valid JSON for the call's schema (GRPO
samples without the constraint) earns one below the worst valid answer, never an error:
a judge that cannot answer must learn that it is the worst outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from therapygym.calibration.bench import CTRS_SCALE
from therapygym.judge_training.calls import JudgeCall
from therapygym.judges.parsing import parse_output
from therapygym.judges.rubric import DISPLACED
from therapygym.judges.safety_rules import label_result

RANGE = float(CTRS_SCALE[1] - CTRS_SCALE[0])
WORST = {"ctrs": -RANGE, "safety": 0.0}  # the worst a valid answer earns
INVALID = {kind: worst - 1.0 for kind, worst in WORST.items()}  # below any valid answer
_VERDICT = {"yes": True, "no": False}


def agreement_reward(call: JudgeCall, text: str) -> float:
    """How well the answer `text` to `call` agrees with the experts (module docstring)."""
    try:
        value = parse_output(text, call.schema).model_dump(mode="json")
    except ValueError:
        return INVALID[call.kind]
    if call.kind == "ctrs":
        errors = []
        for item, expert in call.ctrs.items():
            got = value[item]
            displaced = got.get("status") == DISPLACED
            errors.append(RANGE if displaced else abs(got["score"] - expert))
        return -sum(errors) / len(errors)
    right = 0
    for label in call.labels:
        if label.id not in call.safety:
            continue
        cues = set(value[label.id].get("cues_heard", []))
        verdict = label_result(label, value[label.id], call.shown, set(), cues)["verdict"]
        right += _VERDICT.get(verdict) == call.safety[label.id]
    return right / len(call.safety)


def reward_function(calls: Mapping[str, JudgeCall]) -> Callable[..., list[float]]:
    """A TRL reward function over a dataset whose `call_id` column names the call each
    prompt is (TRL passes dataset columns to reward functions by name)."""

    def judge_agreement(
        prompts: list[Any], completions: list[Any], call_id: list[str], **_: Any
    ) -> list[float]:
        return [
            agreement_reward(calls[cid], _text(completion))
            for cid, completion in zip(call_id, completions, strict=True)
        ]

    return judge_agreement


def _text(completion: Any) -> str:
    """A conversational completion is a list of messages; a plain one is the text."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion)
    return str(completion)
