"""The rollout's generation backends: transformers' logprobs are the trainer's own, vLLM's
colocate and server paths are called as TRL calls them (vLLM stands in as fakes shaped
like its objects: it cannot run on these CPUs), and a config asking for what cannot work
is refused with one line."""

from __future__ import annotations

import importlib.util
import math
import sys
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

pytest.importorskip("trl", reason="the [train] extra is not installed")

from tinylm import tiny_policy, tiny_tokenizer

from therapygym.errors import ConfigError
from therapygym.rl.generation import (
    HFGenerator,
    Sampling,
    VLLMColocate,
    VLLMServer,
    check_generation,
    policy_placement,
    rollout_generator,
)

SAMPLING = Sampling(
    max_tokens=5, temperature=0.7, top_p=1.0, top_k=0, min_p=None, repetition_penalty=1.0
)


def _args(tmp_path: Path, **fields: Any) -> Any:
    from trl import GRPOConfig

    defaults = {"use_cpu": True, "bf16": False, "report_to": "none", "temperature": 0.7}
    return GRPOConfig(output_dir=str(tmp_path), **{**defaults, **fields})


def test_transformers_logprobs_are_the_policy_s_own_at_the_sampling_temperature() -> None:
    """What TRL recomputes for the loss: log_softmax(logits / T) of each sampled token,
    from a full forward pass; contexts of different lengths (left-padded) included."""
    import torch

    tokenizer = tiny_tokenizer()
    model = tiny_policy(tokenizer)
    contexts = [tokenizer.encode("Hello there, how"), tokenizer.encode("Hi")]
    torch.manual_seed(0)
    turns = HFGenerator(model, tokenizer, SAMPLING).generate(contexts)
    assert model.training  # put back as it was
    for context, turn in zip(contexts, turns, strict=True):
        assert 1 <= len(turn.token_ids) <= SAMPLING.max_tokens
        assert len(turn.logprobs) == len(turn.token_ids)
        ids = torch.tensor([context + turn.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(context) - 1 : -1] / SAMPLING.temperature
        expected = logits.log_softmax(-1).gather(-1, torch.tensor(turn.token_ids)[:, None])
        assert turn.logprobs == pytest.approx(expected.squeeze(-1).tolist(), abs=1e-4)


class _Logprob(SimpleNamespace):
    """vLLM's `Logprob`: the value and its rank."""


def _request_output(token_ids: list[int], logprobs: list[float | None]) -> Any:
    """A vLLM `RequestOutput` with one sample, asked with logprobs=0."""
    per_token = [{t: _Logprob(logprob=math.nan if lp is None else lp, rank=1)}
                 for t, lp in zip(token_ids, logprobs, strict=True)]  # fmt: skip
    return SimpleNamespace(outputs=[SimpleNamespace(token_ids=token_ids, logprobs=per_token)])


def _fake_vllm(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """`vllm.SamplingParams` recording what it was built with (TRL's vLLM module is
    imported first, while it still sees no vLLM installed)."""
    import trl.generation.vllm_generation  # noqa: F401

    built: list[dict[str, Any]] = []
    module = types.ModuleType("vllm")
    module.SamplingParams = lambda **kw: built.append(kw) or SimpleNamespace(**kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    return built


def test_colocated_vllm_is_asked_for_one_turn_with_the_sampled_logprobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = _fake_vllm(monkeypatch)
    calls: list[Any] = []

    def generate(prompts: list[Any], sampling_params: Any, use_tqdm: bool) -> list[Any]:
        calls.append(prompts)
        return [_request_output([5, 6, 7], [-0.5, None, -0.25]), _request_output([8], [-1.0])]

    colocate = VLLMColocate(SimpleNamespace(generate=generate), SAMPLING, {"seed": 3})
    turns = colocate.generate([[1, 2], [3]])
    assert calls == [[{"prompt_token_ids": [1, 2]}, {"prompt_token_ids": [3]}]]
    assert built == [
        {"repetition_penalty": 1.0, "temperature": 0.7, "top_p": 1.0, "top_k": 0, "min_p": 0.0,
         "seed": 3, "n": 1, "max_tokens": 5, "logprobs": 0}
    ]  # fmt: skip
    assert [t.token_ids for t in turns] == [[5, 6, 7], [8]]
    assert turns[0].logprobs[0] == -0.5 and math.isnan(turns[0].logprobs[1])
    assert turns[0].logprobs[2] == -0.25 and turns[1].logprobs == [-1.0]


def test_a_vllm_server_is_asked_as_trl_asks_it() -> None:
    sent: list[dict[str, Any]] = []

    def generate(**request: Any) -> dict[str, Any]:
        sent.append(request)
        return {
            "prompt_ids": request["prompts"],
            "completion_ids": [[4, 2], [9]],
            "logprobs": [[[-0.1], [-0.2]], [[-0.3]]],
            "logprob_token_ids": [[[4], [2]], [[9]]],
        }

    turns = VLLMServer(SimpleNamespace(generate=generate), SAMPLING, {}).generate([[1], [2, 3]])
    assert sent == [
        {"prompts": [[1], [2, 3]], "n": 1, "max_tokens": 5, "logprobs": 0,
         "generation_kwargs": {}, "repetition_penalty": 1.0, "temperature": 0.7, "top_p": 1.0,
         "top_k": 0, "min_p": 0.0}
    ]  # fmt: skip
    assert [(t.token_ids, t.logprobs) for t in turns] == [([4, 2], [-0.1, -0.2]), ([9], [-0.3])]


def test_the_backend_follows_the_trainer_s_vllm_setup(tmp_path: Path) -> None:
    args = _args(tmp_path, generation_kwargs={"seed": 1, "max_tokens": 999})
    waited: list[bool] = []
    trainer = SimpleNamespace(
        args=args,
        processing_class=None,
        accelerator=SimpleNamespace(wait_for_everyone=lambda: waited.append(True)),
        vllm_generation=SimpleNamespace(mode="colocate", llm="LLM", vllm_client="CLIENT"),
    )
    assert isinstance(rollout_generator(trainer, "MODEL", 7), HFGenerator)
    args.use_vllm = True
    colocate = rollout_generator(trainer, None, 7)
    assert isinstance(colocate, VLLMColocate) and colocate.llm == "LLM"
    assert colocate.generation_kwargs == {"seed": 1}  # a turn's length is ours
    assert colocate.sampling.max_tokens == 7 and not waited
    trainer.vllm_generation.mode = "server"
    server = rollout_generator(trainer, None, 7)
    assert isinstance(server, VLLMServer) and server.client == "CLIENT"
    assert waited == [True]  # no rank generates before rank 0 pushed the step's weights


def _spec(real: Any, installed: Any) -> Any:
    """`importlib.util.find_spec` as if vLLM were installed."""
    return lambda name: installed if name == "vllm" else real(name)


def _config(tmp_path: Path, grpo: dict[str, Any]) -> Any:
    from therapygym.rl.train import load_train_config

    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"run_id": "t", "patients": "dep-01-maya", "grpo": grpo}))
    return load_train_config(path)


@pytest.mark.parametrize(
    ("grpo", "message"),
    [
        ({"vllm_mode": "remote"}, r"grpo.vllm_mode: 'remote' is not one of colocate, server"),
        ({"bf16": True}, r"grpo.bf16: bf16 weights need a GPU, and use_cpu is true"),
        ({"use_vllm": True}, r"grpo.use_vllm: vLLM generates on a GPU"),
    ],
)
def test_a_config_that_cannot_generate_is_refused_in_one_line(
    tmp_path: Path, grpo: dict[str, Any], message: str
) -> None:
    from therapygym.rl.train import check_train_config

    with pytest.raises(ConfigError, match=message) as err:
        check_train_config(_config(tmp_path, grpo), where="train.yaml")
    assert str(err.value).startswith("train.yaml: grpo.") and "\n" not in str(err.value)


def test_vllm_options_are_checked_where_a_gpu_is_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    def on_gpu(**fields: Any) -> Any:
        return _args(tmp_path, use_cpu=False, use_vllm=True, **fields)

    colocate, server = on_gpu(), on_gpu(vllm_mode="server")
    refused = {
        field: on_gpu(**{field: value})
        for field, value in (("vllm_enable_sleep_mode", True), ("vllm_tensor_parallel_size", 2))
    }
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the args are built
    real = importlib.util.find_spec
    installed = SimpleNamespace(name="vllm")
    if real("vllm") is None:
        with pytest.raises(ConfigError, match=r"grpo.use_vllm: vLLM is not installed"):
            check_generation({}, colocate, "t")
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n: installed if n == "vllm" else real(n)
    )
    check_generation({}, colocate, "t")  # one GPU per rank: fine
    check_generation({}, server, "t")
    for field, args in refused.items():
        with pytest.raises(ConfigError, match=rf"^t: grpo.{field}: "):
            check_generation({}, args, "t")


def test_the_policy_loads_in_bf16_on_a_gpu_and_float32_on_the_cpu(tmp_path: Path) -> None:
    import torch

    from therapygym.models.transformers_local import load_causal_lm

    cpu = _args(tmp_path, bf16=False)
    assert policy_placement(cpu) == (torch.float32, None)
    gpu = torch.device("cuda", 1)
    on_gpu = SimpleNamespace(device=gpu, bf16=True, deepspeed=None)
    assert policy_placement(on_gpu) == (torch.bfloat16, gpu)
    assert policy_placement(SimpleNamespace(device=gpu, bf16=True, deepspeed="z3.json")) == (
        torch.bfloat16,
        None,  # DeepSpeed places the weights
    )
    tokenizer = tiny_tokenizer()
    tiny_policy(tokenizer).to(torch.bfloat16).save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    lm, _ = load_causal_lm(str(tmp_path / "m"))
    assert lm.dtype == torch.float32  # as documented, whatever the folder holds
    lm, _ = load_causal_lm(str(tmp_path / "m"), dtype=torch.bfloat16, device="cpu")
    assert lm.dtype == torch.bfloat16 and lm.device.type == "cpu"
