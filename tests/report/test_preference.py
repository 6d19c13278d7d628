"""`runs export --format preference`: the pairing rule, the pairs of a judged run, and
a file TRL's DPOTrainer takes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from clirun import cli
from report_store import PROFILES, RUN, THERAPISTS, scores_for, transcript

from therapygym.errors import TherapygymError
from therapygym.report.exports import export_run
from therapygym.report.preference import Candidate, pair_candidates
from therapygym.store import RunStore

PROMPT = [{"role": "user", "content": "I have not slept for days."}]


def cand(
    sid: str,
    score: float,
    *,
    text: str | None = None,
    flags: tuple[str, ...] = (),
    judged: bool = True,
    prompt: list[dict[str, str]] = PROMPT,
    profile: str = "p",
) -> Candidate:
    return Candidate(
        session_id=sid, profile_id=profile, therapist="t", prompt=prompt,
        completion=[{"role": "assistant", "content": text or f"answer of {sid}"}],
        score=score, safety_judged=judged, flags=flags,
    )  # fmt: skip


def chosen_rejected(pairs: list[Any]) -> list[tuple[str, str, str]]:
    return [(p.chosen.session_id, p.rejected.session_id, p.reason) for p in pairs]


def test_the_margin_is_a_least_difference_and_ties_never_pair() -> None:
    a, b, c = cand("a", 0.8), cand("b", 0.7), cand("c", 0.5)
    assert chosen_rejected(pair_candidates([a, b, c], 0.2, safety_pairs=True)) == [
        ("a", "c", "score"),
        ("b", "c", "score"),  # 0.2 apart: at the margin pairs
    ]
    tie = [cand("x", 0.5), cand("y", 0.5)]
    assert pair_candidates(tie, 0.0, safety_pairs=True) == []
    same_words = [cand("x", 0.9, text="Same."), cand("y", 0.1, text="Same.")]
    assert pair_candidates(same_words, 0.0, safety_pairs=True) == []


def test_only_a_context_shared_pairs() -> None:
    other_prompt = [{"role": "user", "content": "Something else."}]
    pairs = pair_candidates(
        [cand("a", 0.9), cand("b", 0.1, prompt=other_prompt), cand("c", 0.1, profile="q")],
        0.1,
        safety_pairs=True,
    )
    assert pairs == []


def test_a_violating_or_unjudged_session_is_never_chosen() -> None:
    """A session that missed a crisis scores 0.95 on CTRS: it is still only ever the
    rejected side, and at session level it loses to a passed session whatever the scores."""
    missed = cand("missed", 0.95, flags=("crisis_unaddressed",))
    clean = cand("clean", 0.30)
    unjudged = cand("unjudged", 0.99, judged=False)
    both = pair_candidates([missed, clean, unjudged], 0.1, safety_pairs=True)
    assert chosen_rejected(both) == [("clean", "missed", "safety")]
    # at turn level the violation is the session's, not the turn's: only the margin pairs,
    # and the violating side may still only be rejected
    assert pair_candidates([missed, clean], 0.1, safety_pairs=False) == []
    low = cand("low", 0.1, flags=("crisis_unaddressed",))
    assert chosen_rejected(pair_candidates([clean, low], 0.1, safety_pairs=False)) == [
        ("clean", "low", "score")
    ]
    two_flagged = [missed, cand("other", 0.1, flags=("medical_advice",))]
    assert pair_candidates(two_flagged, 0.0, safety_pairs=True) == []


def varied_store(path: Path, rubrics: tuple[str, ...] = ("ctrs", "safety", "response")) -> RunStore:
    """report_store's run with words that differ as the pairing needs: therapist turn 1
    says the same per therapist (so turn-1 pairs cross therapists, and the turn-3 context
    differs between therapists), turn 5 differs per sample. Scores as report_store: bot-a
    above rule-based, sample 0 above sample 1; rule-based's sample 0 missed a crisis."""
    store = RunStore(path)
    store.ensure_run(RUN, {"therapists": list(THERAPISTS)})
    for profile in PROFILES:
        for therapist in THERAPISTS:
            for sample in (0, 1):
                t = transcript(profile, therapist, sample)

                def version(index: int, sample: int = sample) -> int:
                    return sample if index == 5 else 0

                turns = [
                    x.model_copy(update={"text": f"{therapist} says {x.index} v{version(x.index)}"})
                    if x.speaker == "therapist" else x
                    for x in t.turns
                ]  # fmt: skip
                t = t.model_copy(update={"turns": turns})
                store.save_session(t)
                for unit in scores_for(t):
                    store.save_scores([r for r in unit if r.rubric_id in rubrics])
    return store


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_session_pairs_of_a_judged_run(tmp_path: Path) -> None:
    store = varied_store(tmp_path / "s.sqlite")
    out = tmp_path / "pairs.jsonl"
    # per profile: bot-a 0 > bot-a 1 and both > rule-based 1 on CTRS (score pairs); every
    # passed session over rule-based 0, which missed a crisis (safety pairs)
    assert export_run(store, RUN, out, "preference") == 12
    lines = read_lines(out)
    assert sum(x["reason"] == "safety" for x in lines) == 6
    assert all(x["chosen_safety_flags"] == [] for x in lines)
    missed = [x for x in lines if x["rejected_safety_flags"]]
    assert len(missed) == 6 and all(x["reason"] == "safety" for x in missed)
    # rule-based 1 is chosen over rule-based 0 though 0 has the higher CTRS
    rb = [x for x in missed if x["chosen_therapist"] == "rule-based"]
    assert len(rb) == 2 and all(x["chosen_score"] < x["rejected_score"] for x in rb)
    first = lines[0]
    assert first["prompt"] == [
        {"role": "user", "content": f"patient line 0 of {first['profile_id']}"}
    ]
    assert [m["role"] for m in first["chosen"]] == ["assistant", "user"] * 2 + ["assistant"]
    assert first["score_name"] == "ctrs" and first["level"] == "session"
    for x in lines:
        if x["reason"] == "score":
            assert x["chosen_score"] - x["rejected_score"] >= 0.1
    assert export_run(store, RUN, out, "preference", options={"margin": 0.9}) == 6  # safety only


def test_turn_pairs_match_the_conversation_up_to_the_turn(tmp_path: Path) -> None:
    store = varied_store(tmp_path / "s.sqlite")
    out = tmp_path / "turns.jsonl"
    # per profile at turn 1: bot-a's two sessions over rule-based's two (response 0.625
    # against 0.375); turn 3 follows different words per therapist, turn 5 ties per therapist
    assert export_run(store, RUN, out, "preference", options={"level": "turn"}) == 8
    lines = read_lines(out)
    assert {x["turn_index"] for x in lines} == {1}
    assert all(x["chosen"] == [{"role": "assistant", "content": "bot-a says 1 v0"}] for x in lines)
    assert {(x["chosen_score"], x["rejected_score"]) for x in lines} == {(0.625, 0.375)}

    kto = tmp_path / "kto.jsonl"
    export_run(store, RUN, kto, "preference", options={"level": "turn", "preference_style": "kto"})
    rows = read_lines(kto)
    assert len(rows) == 16 and [r["label"] for r in rows[:2]] == [True, False]
    assert (
        rows[0]["completion"] == lines[0]["chosen"]
        and rows[1]["completion"] == lines[0]["rejected"]
    )

    with pytest.raises(TherapygymError, match=r"no turn-level pairs at --margin 0\.5"):
        export_run(store, RUN, out, "preference", options={"level": "turn", "margin": 0.5})
    with pytest.raises(TherapygymError, match="the CTRS scores whole sessions"):
        export_run(store, RUN, out, "preference", options={"level": "turn", "score": "ctrs"})


def test_a_run_without_safety_verdicts_is_refused(tmp_path: Path) -> None:
    store = varied_store(tmp_path / "s.sqlite", rubrics=("ctrs", "response"))
    with pytest.raises(TherapygymError, match="has no safety verdicts"):
        export_run(store, RUN, tmp_path / "x.jsonl", "preference")


def test_the_command_refuses_preference_options_for_other_formats(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    varied_store(path).close()
    done = cli("runs", "export", RUN, "-o", str(tmp_path / "p.jsonl"), "--format", "preference",
               "--margin", "0.2", "--store", str(path))  # fmt: skip
    assert done.code == 0, done.stderr
    assert "wrote 10 pairs to" in done.stdout  # bot-a 0 over bot-a 1 is 1/6 apart
    refused = cli("runs", "export", RUN, "-o", str(tmp_path / "x.csv"), "--format", "csv",
                  "--level", "turn", "--store", str(path))  # fmt: skip
    assert refused.code == 2
    assert "--level is not an option of --format csv" in refused.stderr
    bad = cli("runs", "export", RUN, "-o", str(tmp_path / "y.jsonl"), "--format", "preference",
              "--margin", "3", "--store", str(path))  # fmt: skip
    assert (
        bad.code == 2 and "option --margin: Input should be less than or equal to 1" in bad.stderr
    )
    assert "Traceback" not in bad.stderr + refused.stderr


def test_dpo_trainer_takes_the_file(tmp_path: Path) -> None:
    """The export loads with `datasets` and TRL's DPOTrainer tokenizes it: a tiny random
    Llama and a word-level tokenizer built here, so nothing is downloaded."""
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    store = varied_store(tmp_path / "s.sqlite")
    out = tmp_path / "pairs.jsonl"
    n = export_run(store, RUN, out, "preference", options={"level": "turn"})
    data = datasets.load_dataset("json", data_files=str(out), split="train",
                                 cache_dir=str(tmp_path / "cache"))  # fmt: skip
    assert data.num_rows == n

    words = " ".join(json.dumps(x) for x in read_lines(out)) + " user assistant system"
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    special = ["<unk>", "<pad>", "<s>", "</s>"]
    tok.train_from_iterator([words], trainers.WordLevelTrainer(special_tokens=special))
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
        eos_token="</s>",
    )  # fmt: skip
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} </s> {% endfor %}"
        "{% if add_generation_prompt %}assistant {% endif %}"
    )
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config)
    args = trl.DPOConfig(output_dir=str(tmp_path / "o"), report_to=[], use_cpu=True,
                         per_device_train_batch_size=2, max_steps=1)  # fmt: skip
    trainer = trl.DPOTrainer(model=model, ref_model=copy.deepcopy(model), args=args,
                             train_dataset=data, processing_class=tokenizer)  # fmt: skip
    tokenized = trainer.train_dataset
    assert {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(tokenized.column_names)
    first = tokenized[0]
    assert first["chosen_ids"] != first["rejected_ids"] and first["prompt_ids"]
    assert tokenizer.unk_token_id not in first["chosen_ids"]
