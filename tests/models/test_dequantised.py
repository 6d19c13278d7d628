"""A GGUF file converted once for transformers and read from the cache after that: the
folder's key, the read-back, two processes converting at once, an unwritable cache, and (slow)
the embedded model's converted folder against the file read directly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="the [train] extra is not installed")

from rl.tinylm import tiny_policy, tiny_tokenizer

from therapygym.models import load_model
from therapygym.models.dequantised import convert, converted_folder, is_converted
from therapygym.models.transformers_local import load_causal_lm, load_tokenizer


@pytest.fixture
def gguf_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A cache of this test's own, and transformers' GGUF reading replaced by the tiny
    model and tokenizer: the list records each read of a GGUF file ("model", "tokenizer")."""
    import transformers

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    reads: list[str] = []
    tokenizer = tiny_tokenizer()
    real_model = transformers.AutoModelForCausalLM.from_pretrained
    real_tokenizer = transformers.AutoTokenizer.from_pretrained

    def model(folder: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("gguf_file"):
            reads.append("model")
            return tiny_policy(tokenizer)
        return real_model(folder, *args, **kwargs)

    def tokenizer_of(folder: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("gguf_file"):
            reads.append("tokenizer")
            return tiny_tokenizer()
        return real_tokenizer(folder, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer_of)
    return reads


def fake_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + bytes(64))
    return path


def test_the_folder_changes_with_the_file_and_the_converter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = fake_gguf(tmp_path)
    first = converted_folder(path)
    assert first == converted_folder(path)
    assert first.parent == tmp_path / "cache" / "therapygym" / "dequantised"
    assert first.name.startswith("m-")
    os.utime(path, ns=(1, 1))
    assert converted_folder(path) != first  # the file was replaced
    touched = converted_folder(path)
    monkeypatch.setattr(transformers, "__version__", "0.0.1")
    assert converted_folder(path) != touched  # another converter


def test_a_gguf_file_is_converted_once_and_read_from_its_folder_after(
    tmp_path: Path, gguf_reads: list[str]
) -> None:
    import torch

    path = fake_gguf(tmp_path)
    first, _ = load_causal_lm(str(path))
    assert gguf_reads == ["model", "tokenizer"] and is_converted(converted_folder(path))
    again, tokenizer = load_causal_lm(str(path))
    assert load_tokenizer(str(path)).get_vocab() == tokenizer.get_vocab()
    assert gguf_reads == ["model", "tokenizer"]  # the file was not read again
    pairs = zip(first.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert tokenizer.chat_template == tiny_tokenizer().chat_template
    # records still name the file, not the cache
    assert load_model(f"hf:{path}").identity == f"hf:{path.resolve()}"


def test_the_tokenizer_alone_never_converts(tmp_path: Path, gguf_reads: list[str]) -> None:
    path = fake_gguf(tmp_path)
    load_tokenizer(str(path))
    assert gguf_reads == ["tokenizer"] and not converted_folder(path).exists()


def test_a_process_that_loses_the_race_keeps_the_winners_folder(
    tmp_path: Path, gguf_reads: list[str]
) -> None:
    path = fake_gguf(tmp_path)
    folder = converted_folder(path)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"winner": true}')  # renamed in while we converted
    (folder / "model.safetensors").write_bytes(b"weights")
    assert convert(path, folder)
    assert (folder / "config.json").read_text() == '{"winner": true}'
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no partial left


def test_a_rank_whose_save_writes_no_model_reads_the_file_and_leaves_no_folder(
    tmp_path: Path, gguf_reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers' save_pretrained writes nothing on a rank other than 0 of an initialised
    process group (the ranks of `accelerate launch`). Such a rank's folder would hold a
    tokenizer alone: renamed into place, it would break every later load. It reads the
    file instead, and the cache stays empty for rank 0 to fill."""
    import transformers

    monkeypatch.setattr(transformers.PreTrainedModel, "should_save_on_this_rank", lambda *_: False)
    path = fake_gguf(tmp_path)
    folder = converted_folder(path)
    assert not convert(path, folder)
    assert not folder.exists() and not list(folder.parent.iterdir())
    model, _ = load_causal_lm(str(path))
    assert gguf_reads[-2:] == ["tokenizer", "model"] and not model.is_quantized
    assert not folder.exists()


def test_a_rank_of_a_process_group_converts_in_a_child_process(
    tmp_path: Path, gguf_reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a process group the conversion must not run in this process (transformers would
    save on rank 0 only, and under ZeRO-3 load the file partitioned, a collective): it runs
    `convert_here` in a child, and what counts is the folder the child leaves. A child that
    fails leaves none, and the caller reads the file itself."""
    import subprocess

    import therapygym.models.dequantised as dequantised

    path = fake_gguf(tmp_path)
    folder = converted_folder(path)
    ran: list[list[str]] = []

    def child(command: list[str], **_: Any) -> Any:
        ran.append(command)
        assert "convert_here" in command[command.index("-c") + 1]
        ok = len(ran) == 1  # the first child converts (here, in-process), the second fails
        if ok:
            dequantised.convert_here(Path(command[-2]), Path(command[-1]))
        return subprocess.CompletedProcess(command, 0 if ok else 1)

    monkeypatch.setattr(dequantised, "_in_process_group", lambda: True)
    monkeypatch.setattr(dequantised.subprocess, "run", child)
    assert convert(path, folder) and is_converted(folder)
    assert ran[0][-2:] == [str(path), str(folder)]
    elsewhere = tmp_path / "elsewhere"
    assert not convert(path, elsewhere) and not elsewhere.exists()


def test_a_folder_without_weights_is_not_a_conversion(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}")
    assert not is_converted(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    assert is_converted(tmp_path)


def test_a_conversion_killed_mid_way_leaves_nothing_for_long(
    tmp_path: Path, gguf_reads: list[str]
) -> None:
    """A killed conversion's temporary folder goes at the next conversion once it is an hour
    old; one written to now (another process converting) stays."""
    path = fake_gguf(tmp_path)
    folder = converted_folder(path)
    abandoned, live = (folder.parent / f".{folder.name}-{n}" for n in ("old", "new"))
    for partial in (abandoned, live):
        partial.mkdir(parents=True)
        (partial / "model.safetensors").write_bytes(b"half")
    os.utime(abandoned, (0, 0))
    assert convert(path, folder) and is_converted(folder)
    assert sorted(p.name for p in folder.parent.iterdir()) == sorted([folder.name, live.name])


def test_an_unwritable_cache_reads_the_file_itself(
    tmp_path: Path, gguf_reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    path = fake_gguf(tmp_path)
    model, _ = load_causal_lm(str(path))
    assert gguf_reads == ["tokenizer", "model"] and not model.is_quantized


@pytest.mark.slow
def test_the_embedded_model_from_its_folder_is_the_gguf_file_read_directly() -> None:
    """Weights, logits, chat template and tokens: the converted folder (made here, or by an
    earlier test in the user's cache) is the model transformers reads from the file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from therapygym.models.llamacpp import embedded_model_path

    path = embedded_model_path()
    cached, cached_tokenizer = load_causal_lm("smollm2")
    assert is_converted(converted_folder(path))
    direct = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    ours, theirs = cached.state_dict(), direct.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Ünï café"}]
    assert cached_tokenizer.apply_chat_template(messages, tokenize=False) == (
        tokenizer.apply_chat_template(messages, tokenize=False)
    )
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(text, return_tensors="pt")
    assert cached_tokenizer(text)["input_ids"] == inputs["input_ids"][0].tolist()
    with torch.no_grad():
        assert torch.equal(cached(**inputs).logits, direct(**inputs).logits)
