"""`therapygym train` under DeepSpeed ZeRO-2 and ZeRO-3, for real: the shipped
`configs/accelerate/zero{2,3}.yaml` launched with `--num_processes 2` on CPU (DeepSpeed's CPU
accelerator speaks gloo), on the tiny random Llama (tests/rl/tinylm.py, saved as a model
folder) and once on the embedded GGUF model, the patient and the judge a scripted local
server.

What ZeRO changes and these tests hold: under ZeRO-3 the rollout generates from weights
gathered by TRL's unwrapping (without it a rank would generate from its empty shard), the
saved adapter or model is gathered whole from the ranks' shards, and a resume from a
DeepSpeed checkpoint (each rank's optimiser shard) replays the steps after it into the
same session ids and ends with the same adapter as the run that was never stopped. A
resume whose settings differ from the stored run is refused on every rank with the one
line, not with a traceback from the rank the main process left waiting.

Each launch takes about 10 s on 2 cores (the first on a machine ~30 s more: DeepSpeed
compiles its shared-memory op once into ~/.cache/torch_extensions); the one on the embedded
model, converting it first, about 65 s."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl", reason="the [train] extra is not installed")
pytest.importorskip("deepspeed", reason="the [deepspeed] extra is not installed")

from launched import (
    RANKS,
    launch,
    reward_steps,
    rewrite,
    session_ids,
    tensors,
    train_config,
)
from tinylm import transcript_judge

from therapygym.models.dequantised import is_converted

pytestmark = pytest.mark.slow
REFUSAL = "already exists in"


EXPECTED = [f"ds:step{k}:rank{r}:1" for k in range(2) for r in range(RANKS)]


@pytest.mark.timeout(900)
def test_zero3_trains_saves_the_adapter_whole_and_resumes_from_its_checkpoint(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    import torch

    spec = server_spec(openai_server(transcript_judge))
    config = train_config(tmp_path, spec, lora=True, save_strategy="steps", save_steps=1)
    store, out = tmp_path / "store.sqlite", tmp_path / "out"

    done = launch("zero3", config, store)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("2 steps in") == 1  # the main process alone prints
    assert reward_steps(out) == [1, 2] and session_ids(store) == EXPECTED
    rows = [json.loads(line) for line in (out / "rewards.jsonl").open()]
    assert all(r["reward_std"] > 0 for r in rows)  # each step's group had an advantage
    # DeepSpeed wrote its own checkpoints: each rank's optimiser shard
    shards = (out / "trainer" / "checkpoint-1" / "global_step1").glob("*optim_states.pt")
    assert len(list(shards)) == RANKS
    adapter = tensors(out / "adapter" / "adapter_model.safetensors")
    # gathered whole from the two ranks' shards: every LoRA matrix at its full shape, and
    # B (zero at the start) moved by training
    assert adapter and all(t.numel() == 8 * 16 for t in adapter.values())
    assert all(t.abs().sum() > 0 for name, t in adapter.items() if "lora_B" in name)

    # killed after step 1: resume from its checkpoint; step 2 is played again
    (out / "rewards.jsonl").write_text((out / "rewards.jsonl").read_text().splitlines()[0] + "\n")
    rewrite(config, resume_from_checkpoint=str(out / "trainer" / "checkpoint-1"))
    resumed = launch("zero3", config, store)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert reward_steps(out) == [1, 2]  # step 1's row kept, step 2's logged again, once
    assert session_ids(store) == EXPECTED  # step 2's sessions replaced, none added
    again = tensors(out / "adapter" / "adapter_model.safetensors")
    assert again.keys() == adapter.keys()
    assert all(torch.equal(again[name], adapter[name]) for name in adapter)

    # a resume with other settings: refused on both ranks with the one line
    rewrite(config, learning_rate=0.01)
    refused = launch("zero3", config, store)
    assert refused.returncode != 0
    assert refused.stderr.count(REFUSAL) == RANKS, refused.stderr[-4000:]
    assert "[rank1]: Traceback" not in refused.stderr
    assert "Connection closed by peer" not in refused.stderr
    assert reward_steps(out) == [1, 2]  # the refused run touched nothing


@pytest.mark.timeout(900)
def test_zero2_full_weights_are_saved_once_whole_and_trained(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    import torch

    spec = server_spec(openai_server(transcript_judge))
    config = train_config(tmp_path, spec, lora=False)
    store, out = tmp_path / "store.sqlite", tmp_path / "out"

    done = launch("zero2", config, store)
    assert done.returncode == 0, done.stderr[-4000:]
    assert reward_steps(out) == [1, 2] and session_ids(store) == EXPECTED
    assert sorted(p.name for p in out.iterdir()) == ["model", "rewards.jsonl", "trainer"]
    before = tensors(tmp_path / "base" / "model.safetensors")
    after = tensors(out / "model" / "model.safetensors")
    assert after.keys() == before.keys()
    assert all(after[n].shape == before[n].shape for n in before)
    moved = [n for n in before if not torch.equal(before[n].to(after[n].dtype), after[n])]
    assert any(n.startswith("model.layers.0.self_attn") for n in moved)


@pytest.mark.timeout(900)
def test_zero3_on_the_embedded_gguf_policy_from_an_empty_conversion_cache(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    """The embedded model as the policy, no conversion of it cached yet (as on a new
    machine). Loading a GGUF file under ZeRO-3 in the ranks themselves hung: the load is
    partitioned, a collective per parameter, and the ranks loaded differently (one converted
    and read its folder, one read the file). Each rank converts in a child process now and
    all load the one folder."""
    spec = server_spec(openai_server(transcript_judge))
    config = train_config(tmp_path, spec, lora=True, model="smollm2")
    store, cache = tmp_path / "store.sqlite", tmp_path / "cache"
    done = launch(
        "zero3",
        config,
        store,
        XDG_CACHE_HOME=str(cache),
        # DeepSpeed's compiled op stays where the other tests built it
        TORCH_EXTENSIONS_DIR=os.environ.get(
            "TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions")
        ),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert session_ids(store) == EXPECTED
    (converted,) = (cache / "therapygym" / "dequantised").iterdir()
    assert is_converted(converted)
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()
