"""Qwen3's thinking in the RL path: `chat_template_kwargs` reaches every rendering of the
policy's conversation (the prompt the policy continues, the masked patient turns), and a
`<think>` block the policy writes when thinking is left on never reaches the patient or
the judges. The tokenizer is tinylm's byte-level one with Qwen3's own chat template (TRL
ships it), which appends "<think>\\n\\n</think>\\n\\n" after the assistant header when
enable_thinking is false and renders the last assistant message otherwise than an earlier
one."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("trl", reason="the [train] extra is not installed")

from test_trl import _rollout, _ScriptedVLLM, _trainer
from tinylm import CHATML, ScriptedChat, tiny_tokenizer

from therapygym.errors import ConfigError
from therapygym.rl.loop import BackgroundLoop
from therapygym.rl.trl import patient_turn_tokens, visible_reply

NO_THINKING = {"enable_thinking": False}
EMPTY_THINK = "<think>\n\n</think>\n\n"
MESSAGES = [
    {"role": "system", "content": "SYS"},
    {"role": "user", "content": "I feel low."},
    {"role": "assistant", "content": "Tell me more."},
    {"role": "user", "content": "Work is hard."},
]


def qwen3_tokenizer() -> Any:
    import trl

    tokenizer = tiny_tokenizer()
    template = Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja"
    tokenizer.chat_template = template.read_text()
    return tokenizer


def test_the_template_is_qwen3_s_and_honours_enable_thinking() -> None:
    """What the other tests rest on: the generation prompt with and without thinking."""
    tokenizer = qwen3_tokenizer()
    opening = MESSAGES[:2]
    thinking = tokenizer.apply_chat_template(opening, add_generation_prompt=True, tokenize=False)
    plain = tokenizer.apply_chat_template(
        opening, add_generation_prompt=True, tokenize=False, **NO_THINKING
    )
    assert thinking.endswith("<|im_start|>assistant\n")
    assert plain == thinking + EMPTY_THINK


@pytest.mark.parametrize(("kwargs", "header"), [(NO_THINKING, EMPTY_THINK), ({}, "")])
def test_patient_turn_tokens_take_the_kwargs(kwargs: dict[str, Any], header: str) -> None:
    """The masked tokens between two therapist turns end with the generation prompt the
    kwargs ask for. (Qwen3 gives the last assistant message an empty think block that an
    earlier one loses: the suffix is still the patient's turn alone.)"""
    tokenizer = qwen3_tokenizer()
    got = tokenizer.decode(patient_turn_tokens(tokenizer, MESSAGES, kwargs))
    assert got == "\n<|im_start|>user\nWork is hard.<|im_end|>\n<|im_start|>assistant\n" + header


def test_a_template_without_end_of_turn_tokens_is_refused() -> None:
    tokenizer = qwen3_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    with pytest.raises(RuntimeError, match="does not end the therapist's turn"):
        patient_turn_tokens(tokenizer, MESSAGES)


def _play(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    script: list[list[tuple[str, bool]]],
    kwargs: dict[str, Any],
) -> tuple[dict[str, Any], _ScriptedVLLM, list[list[Any]], Any]:
    """One session of two therapist turns (the turn limit ends it) through the
    colocated-vLLM path, with `kwargs` as TRL's `chat_template_kwargs`; what the patient
    was sent is recorded."""
    from test_generation import _fake_vllm

    from therapygym.rl.trl import TherapyRollout

    _fake_vllm(monkeypatch)
    tokenizer = qwen3_tokenizer()
    llm = _ScriptedVLLM(tokenizer, script, before=lambda call, n: None)
    heard: list[list[Any]] = []

    def patient(messages: list[Any]) -> str:
        heard.append(list(messages))
        return "Fine."

    trainer = _trainer(tmp_path, tokenizer, llm)
    trainer.args.chat_template_kwargs = kwargs
    loop = BackgroundLoop()
    try:
        rollout, prompt = _rollout(ScriptedChat(patient), ScriptedChat(score=6), loop, 4)
        assert isinstance(rollout, TherapyRollout)
        envs: list[Any] = []
        make_env = rollout._env
        monkeypatch.setattr(rollout, "_env", lambda: envs.append(make_env()) or envs[-1])
        out = rollout([prompt], trainer)
    finally:
        loop.close()
    return out, llm, heard, envs[0]


def test_the_kwargs_reach_the_prompt_vllm_continues_and_the_patient_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = [[("Hello.", True)], [("Bye.", True)]]
    out, llm, _, _ = _play(tmp_path, monkeypatch, script, NO_THINKING)
    tokenizer = qwen3_tokenizer()
    (prompt_ids,) = out["prompt_ids"]
    assert tokenizer.decode(prompt_ids).endswith("<|im_start|>assistant\n" + EMPTY_THINK)
    assert llm.contexts[0] == [prompt_ids]  # what vLLM continued: the rollout's own ids
    (completion,) = out["completion_ids"]
    (mask,) = out["env_mask"]
    first = llm.turns[0][0][0]
    patient = completion[len(first) : mask.index(1, len(first))]
    assert tokenizer.decode(patient).endswith("<|im_start|>assistant\n" + EMPTY_THINK)
    assert llm.contexts[1] == [prompt_ids + first + patient]


def test_without_the_kwargs_qwen3_s_generation_prompt_has_no_think_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same session with nothing passed: the default (thinking) prompt, so the test
    above fails if the kwargs are dropped anywhere."""
    script = [[("Hello.", True)], [("Bye.", True)]]
    _, llm, _, _ = _play(tmp_path, monkeypatch, script, {})
    text = qwen3_tokenizer().decode(llm.contexts[1][0])
    assert text.endswith("<|im_start|>assistant\n") and "<think>" not in text


def test_a_think_block_is_the_policy_s_own_and_reaches_no_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Thinking left on: the block stays in the completion (sampled, in the loss), the
    patient, the stored transcript and so the judges get the reply after </think>; a turn
    cut off inside its block says "..."; the policy's thinking is logged once."""
    thought = "<think>\nShe sounds low; ask about work.\n</think>\n\nWhat happened at work?"
    script = [[(thought, True)], [("<think>\nStill planning", False)]]
    with caplog.at_level(logging.WARNING, logger="therapygym.rl.trl"):
        out, llm, heard, env = _play(tmp_path, monkeypatch, script, {})
    tokenizer = qwen3_tokenizer()
    (completion,) = out["completion_ids"]
    first = llm.turns[0][0][0]
    assert completion[: len(first)] == first and "</think>" in tokenizer.decode(first)
    assert out["env_mask"][0][: len(first)] == [1] * len(first)
    told = heard[-1][-1]["content"]  # the reply, then the patient's stay-in-role note
    assert told.partition("\n\n")[0] == "What happened at work?"
    assert not any("think" in m["content"] for sent in heard for m in sent)
    said = [t.text for t in env.transcript.turns if t.speaker == "therapist"]
    assert said == ["What happened at work?", "..."]
    assert not any("think" in t.text for t in env.transcript.turns)
    warned = [r for r in caplog.records if "<think>" in r.getMessage()]
    assert len(warned) == 1


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Hello.", "Hello."),
        ("<think>\nplan\n</think>\n\nHello.", "Hello."),
        ("plan</think>Hello.", "Hello."),  # a template that opens the block in the prompt
        ("<think>\nplan, cut off", ""),
    ],
)
def test_visible_reply(text: str, shown: str) -> None:
    assert visible_reply(text) == shown


def _config(tmp_path: Path, **fields: Any) -> Any:
    from therapygym.rl.train import load_train_config

    body = {"run_id": "t", "patients": "dep-01-maya", "output_dir": str(tmp_path / "out")}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**body, **fields}))
    return load_train_config(path)


def _qwen3_folder(tmp_path: Path) -> Path:
    """A model folder holding Qwen3's tokenizer and no weights: all a config check reads."""
    folder = tmp_path / "qwen3"
    qwen3_tokenizer().save_pretrained(folder)
    (folder / "config.json").write_text("{}")
    return folder


def test_the_config_field_reaches_trl_and_the_run_record(tmp_path: Path) -> None:
    from therapygym.rl.train import check_train_config, run_record

    plain = _config(tmp_path)
    assert check_train_config(plain).grpo_args.chat_template_kwargs == {}
    assert "chat_template_kwargs" not in run_record(plain, check_train_config(plain))["train"]
    off = _config(tmp_path, model=str(_qwen3_folder(tmp_path)), chat_template_kwargs=NO_THINKING)
    inputs = check_train_config(off)
    assert inputs.grpo_args.chat_template_kwargs == NO_THINKING
    assert run_record(off, inputs)["train"]["chat_template_kwargs"] == NO_THINKING


def test_the_config_check_refuses_a_key_the_policy_s_template_never_names(
    tmp_path: Path,
) -> None:
    """SmolLM2's template has no thinking switch: enable_thinking would do nothing there.
    A policy not yet on disk is not read (configs are checked before a download)."""
    from therapygym.rl.train import check_train_config

    smol = _config(tmp_path, chat_template_kwargs=NO_THINKING)  # the default model, smollm2
    with pytest.raises(ConfigError) as err:
        check_train_config(smol, where="t.yaml")
    assert str(err.value) == (
        "t.yaml: chat_template_kwargs: enable_thinking: the chat template of smollm2 never "
        "names this, so it would change nothing; check the spelling, or leave it out for "
        "this model"
    )
    later = _config(tmp_path, model="models/not-yet", chat_template_kwargs=NO_THINKING)
    assert check_train_config(later).grpo_args.chat_template_kwargs == NO_THINKING


def test_the_kwargs_in_grpo_are_refused_in_one_line(tmp_path: Path) -> None:
    from therapygym.rl.train import check_train_config

    config = _config(tmp_path, grpo={"chat_template_kwargs": NO_THINKING})
    with pytest.raises(ConfigError, match=r"^t\.yaml: grpo\.chat_template_kwargs: set") as err:
        check_train_config(config, where="t.yaml")
    assert "\n" not in str(err.value)


def test_the_hf_backend_renders_with_the_spec_s_kwargs(tmp_path: Path) -> None:
    """A policy trained with thinking off is evaluated with it off: `hf:` passes the spec's
    chat_template_kwargs to the template (the prompt grows by Qwen3's empty think block,
    one byte a token here) and names them in its identity, so cached answers never mix."""
    from urllib.parse import quote

    from tinylm import tiny_policy

    from therapygym.models import load_model

    tokenizer = qwen3_tokenizer()
    tiny_policy(tokenizer).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    options = quote('{"enable_thinking": false}')
    plain, no_thinking = (
        load_model(f"hf:{tmp_path}"),
        load_model(f"hf:{tmp_path}?chat_template_kwargs={options}"),
    )
    loop = BackgroundLoop()
    try:
        said = MESSAGES[:2]
        tokens = [loop.run(m.chat(said, max_tokens=1)).prompt_tokens for m in (plain, no_thinking)]
        assert tokens[1] - tokens[0] == len(EMPTY_THINK)
        assert plain.identity != no_thinking.identity
        assert no_thinking.identity.endswith('chat_template_kwargs={"enable_thinking":false}')
    finally:
        for model in (plain, no_thinking):
            loop.run(model.aclose())
        loop.close()


def test_chat_template_kwargs_is_for_hf_models_only() -> None:
    from therapygym.errors import ModelSpecError
    from therapygym.models.spec import parse_spec

    with pytest.raises(ModelSpecError, match="chat_template_kwargs= applies to hf: models"):
        parse_spec("openai:m?chat_template_kwargs=%7B%7D")


def test_keys_the_template_never_names_are_refused_with_the_key_named() -> None:
    """A misspelt enable_thinking would leave Qwen3 thinking, silently: the template ignores
    keywords it does not read. Keys it names pass; so do none at all."""
    from therapygym.models.transformers_local import check_template_kwargs

    qwen3 = qwen3_tokenizer()
    check_template_kwargs(qwen3, NO_THINKING, "qwen3")
    check_template_kwargs(qwen3, {}, "qwen3")
    with pytest.raises(ConfigError) as err:
        check_template_kwargs(qwen3, {"enable_thinkng": False, "enable_thinking": False}, "q")
    assert str(err.value).startswith("chat_template_kwargs: enable_thinkng: the chat template")
    assert "enable_thinking," not in str(err.value)
    chatml = qwen3_tokenizer()
    chatml.chat_template = CHATML  # a template with no thinking switch at all
    with pytest.raises(ConfigError, match="enable_thinking: the chat template of smol never"):
        check_template_kwargs(chatml, NO_THINKING, "smol")


def test_every_named_template_counts() -> None:
    """transformers picks a named template by the call (tool_use when tools are given), so a
    key any of them names is one the model can read."""
    from therapygym.models.transformers_local import check_template_kwargs

    tokenizer = qwen3_tokenizer()
    tokenizer.chat_template = {"default": CHATML, "tool_use": "{{ enable_thinking }}"}
    check_template_kwargs(tokenizer, NO_THINKING, "m")
    with pytest.raises(ConfigError, match=r"thinking_budget, tools_x: .* never names these"):
        check_template_kwargs(tokenizer, {"thinking_budget": 8, "tools_x": 1}, "m")


def test_hf_refuses_an_unread_key_when_the_spec_is_built(tmp_path: Path) -> None:
    """The check needs the tokenizer alone (this folder has no weights, which a load would
    need): an hf: spec is refused when it is built, so `run` stops in one line (exit 2)
    before any store, session or weights."""
    from urllib.parse import quote

    from clirun import cli

    from therapygym.models import load_model

    folder = _qwen3_folder(tmp_path)
    typo, right = quote('{"enable_thinkng": false}'), quote('{"enable_thinking": false}')
    spec = f"hf:{folder}?chat_template_kwargs={typo}"
    with pytest.raises(ConfigError, match="enable_thinkng: the chat template of hf:"):
        load_model(spec)
    load_model(f"hf:{folder}?chat_template_kwargs={right}")
    store = tmp_path / "store.sqlite"
    ran = cli("run", "--therapist", spec, "--patient-model", "rule-based", "--store", str(store))
    assert ran.code == 2, ran.stderr
    (line,) = ran.stderr.strip().splitlines()
    assert "--therapist" in line and "enable_thinkng: the chat template of hf:" in line
    assert not store.exists()


def test_an_hf_call_that_fails_names_the_model_once(tmp_path: Path) -> None:
    """A model folder without weights: the call fails for good, and the line names the
    model once (the model layer's error adds it) and then the cause."""
    from therapygym.errors import ModelCallError
    from therapygym.models import load_model

    folder = _qwen3_folder(tmp_path)
    model = load_model(f"hf:{folder}")
    loop = BackgroundLoop()
    try:
        with pytest.raises(ModelCallError) as err:
            loop.run(model.chat(MESSAGES[:2], max_tokens=1))
    finally:
        loop.run(model.aclose())
        loop.close()
    message = str(err.value)
    assert re.match(rf"model hf:{re.escape(str(folder))}: \w+Error: ", message), message
    assert message.count(f"hf:{folder}") == 1
