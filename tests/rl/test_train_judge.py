"""train-judge's data: the held-out split, the experts' answers as judge targets, the reward."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from therapygym.calibration.bench import BenchRating, build_bench, ctrs_item_ids
from therapygym.errors import ConfigError, TherapygymError

pytest.importorskip("transformers", reason="the [train] extra is not installed")

from therapygym.judge_training.calls import (
    bench_part,
    expert_rationale,
    judge_calls,
    judge_plan,
    split_dialogues,
)
from therapygym.judge_training.reward import INVALID, agreement_reward, reward_function
from therapygym.models import load_model

ITEMS = ctrs_item_ids()
TRANSCRIPT = [
    {"speaker": "patient", "text": "I keep worrying about work."},
    {"speaker": "therapist", "text": "What goes through your mind when the worry starts?"},
]


def bench(n: int = 6, items: tuple[str, ...] = ITEMS, safety: dict | None = None) -> Any:
    ratings = []
    for i in range(n):
        for rater, shift in (("a", 0), ("b", 1)) if i < 2 else (("a", 0),):
            ratings.append(
                BenchRating(
                    dialogue_id=f"d{i}",
                    rater=rater,
                    transcript=TRANSCRIPT if rater == "a" else None,
                    ctrs={it: (i + shift) % 7 for it in items},
                    safety=safety or {},
                    rationale="Elicits the thought behind the worry, kindly."
                    if rater == "a"
                    else None,
                )
            )
    return build_bench("tiny", ratings)


def calls_of(b: Any, kinds: tuple[str, ...] = ("ctrs",), **plan: Any) -> list:
    settings = {"ctrs_mode": "one_call", "safety_mode": "per_group", "examples": False}
    settings |= plan
    return judge_calls(
        b, judge_plan("hf:smollm2", kinds, rationale_chars=20, **settings), load_model("hf:smollm2")
    )


def test_the_split_is_deterministic_disjoint_and_by_dialogue() -> None:
    b = bench(9)
    train, held = split_dialogues(b, 0.34, seed=0)
    assert (train, held) == split_dialogues(b, 0.34, seed=0)
    assert len(held) == 3 and not set(train) & set(held)
    assert sorted(train + held) == sorted(b.dialogues)
    assert split_dialogues(b, 0.34, seed=1) != (train, held)  # the seed moves it
    part = bench_part(b, held, "held out")
    assert set(part.dialogues) == set(held)
    # a double-rated dialogue keeps both ratings on its side
    assert sum(len(part.dialogues[d].ratings) for d in held) == sum(
        len(b.dialogues[d].ratings) for d in held
    )


def test_the_split_keeps_one_dialogue_on_each_side_and_refuses_bad_input() -> None:
    b = bench(2)
    assert [len(x) for x in split_dialogues(b, 0.9, 0)] == [1, 1]
    assert [len(x) for x in split_dialogues(b, 0.01, 0)] == [1, 1]
    with pytest.raises(ConfigError, match="--holdout"):
        split_dialogues(b, 1.0, 0)
    with pytest.raises(TherapygymError, match="needs at least 2"):
        split_dialogues(bench(1), 0.5, 0)


def test_a_ctrs_target_is_the_judges_answer_filled_with_the_experts_mean() -> None:
    calls = calls_of(bench(3))
    first = next(c for c in calls if c.dialogue_id == "d1")
    # the prompt is the CTRS judge's own: its system message and the rendered transcript
    assert first.messages[0]["role"] == "system" and "<transcript>" in first.messages[1]["content"]
    answer = json.loads(first.target)
    assert list(answer) == list(ITEMS)  # every item, in rubric order
    # d1: expert a scored 1, expert b 2: mean 1.5 rounds up
    assert {v["score"] for v in answer.values()} == {2}
    assert answer["agenda"] == {"rationale": "Elicits the thought", "evidence": [],
                                "status": "scored", "score": 2}  # fmt: skip
    assert "status" not in answer["feedback"]
    assert first.schema.model_validate(answer)  # valid for the judge's schema
    assert " " not in first.target.replace(
        "Elicits the thought", ""
    )  # compact, as constrained output
    assert agreement_reward(first, first.target) == pytest.approx(-0.5)


def test_a_call_the_experts_did_not_fully_rate_has_no_target_but_still_a_reward() -> None:
    calls = calls_of(bench(3, items=("agenda", "feedback")))
    assert all(c.target is None and set(c.ctrs) == {"agenda", "feedback"} for c in calls)
    per_item = calls_of(bench(3, items=("agenda", "feedback")), ctrs_mode="per_item")
    rated = [c for c in per_item if c.rated]
    assert len(rated) == 3 * 2 and all(c.target for c in rated)
    assert len(per_item) == 3 * len(ITEMS)  # the others ask what nobody rated


def test_the_rationale_is_cut_at_a_word_and_left_empty_when_none_was_written() -> None:
    b = bench(1)
    assert expert_rationale(b.dialogues["d0"], 20) == "Elicits the thought"
    silent = build_bench("s", [r.model_copy(update={"rationale": None}) for r in b.ratings])
    assert expert_rationale(silent.dialogues["d0"], 20) == ""


def test_the_ctrs_reward_is_minus_the_mean_absolute_error() -> None:
    call = calls_of(bench(1, items=("agenda", "feedback")), ctrs_mode="one_call")[0]
    call = replace(call, ctrs={"agenda": 3.0, "feedback": 5.0})

    def answer(agenda: int, feedback: int, status: str = "scored") -> str:
        body = {it: {"rationale": "", "evidence": [], "score": 0} for it in ITEMS}
        for item in ITEMS:
            if "status" in call.schema.model_fields[item].annotation.model_fields:
                body[item] = {"rationale": "", "evidence": [], "status": "scored", "score": 0}
        body["agenda"] |= {"score": agenda, "status": status}
        body["feedback"]["score"] = feedback
        return json.dumps(body)

    assert agreement_reward(call, answer(3, 5)) == 0.0
    assert agreement_reward(call, answer(1, 6)) == pytest.approx(-1.5)
    assert agreement_reward(call, answer(3, 5, status="displaced_by_risk")) == pytest.approx(-3.0)


@pytest.mark.parametrize("text", ["", "not json", '{"agenda": 3}', "{" * 3])
def test_invalid_output_gets_the_lowest_reward_never_an_error(text: str) -> None:
    call = calls_of(bench(1))[0]
    assert agreement_reward(call, text) == INVALID["ctrs"] < -6
    fn = reward_function({call.id: call})
    got = fn(prompts=[call.prompt()], completions=[[{"role": "assistant", "content": text}]],
             call_id=[call.id], completion_ids=[[1]])  # fmt: skip
    assert got == [INVALID["ctrs"]]


def test_safety_calls_target_plain_labels_and_reward_correct_verdicts() -> None:
    labels = {"medication_advice": True, "abuse_unaddressed": False, "impairment_unaddressed": True}
    b = bench(2, items=("agenda",), safety=labels | {"false_reassurance": False})
    calls = [c for c in calls_of(b, kinds=("safety",)) if c.rated and c.dialogue_id == "d0"]
    # per_group: the first group is exactly the three labels; false_reassurance's group
    # has labels nobody rated, so it has no target
    full, partial = calls
    assert full.safety == labels and partial.safety == {"false_reassurance": False}
    assert partial.target is None and full.target is not None
    answer = json.loads(full.target)
    assert {k: v["verdict"] for k, v in answer.items()} == {
        "medication_advice": "yes",
        "abuse_unaddressed": "no",
        "impairment_unaddressed": "yes",
    }
    assert answer["abuse_unaddressed"]["cues_heard"] == ["abuse_experienced"]  # its one cue
    assert answer["medication_advice"]["severity"] == "moderate"  # the label's default
    assert agreement_reward(full, full.target) == 1.0
    answer["medication_advice"] = {"rationale": "", "evidence": [], "verdict": "no"}
    assert agreement_reward(full, json.dumps(answer)) == pytest.approx(2 / 3)
    assert agreement_reward(full, "{}") == INVALID["safety"] < 0


def test_a_checklist_label_gets_no_target() -> None:
    b = bench(2, items=("agenda",), safety={"crisis_unaddressed": False})
    (crisis,) = [c for c in calls_of(b, kinds=("safety",)) if c.rated and c.dialogue_id == "d0"]
    assert crisis.safety == {"crisis_unaddressed": False} and crisis.target is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--holdout", "1.5"), "--holdout: 1.5 is not a fraction"),
        (("--ctrs-mode", "all"), "--ctrs-mode: Input should be 'one_call' or 'per_item'"),
        (("--sft-steps", "0", "--grpo-steps", "0"), "nothing to train"),
    ],
)
def test_bad_options_stop_with_one_line(tmp_path: Any, args: tuple, message: str) -> None:
    from clirun import cli

    from therapygym.calibration.bench import write_bench_jsonl

    write_bench_jsonl(bench(3), tmp_path / "b.jsonl")
    ran = cli("train-judge", "--bench", str(tmp_path / "b.jsonl"), "--base", "smollm2",
              "--output", str(tmp_path / "out"), *args)  # fmt: skip
    assert ran.code != 0 and message in ran.stderr and "Traceback" not in ran.stderr
