"""How the multi-turn rollout generates the policy's turns, and what the config must hold
for it: transformers' `generate`, or the vLLM engine TRL set up (`grpo: {use_vllm: true}`,
`vllm_mode` colocate or server). Every backend returns, per context, the turn's token ids
and the logprob each token was sampled with.

Why the logprobs: with vLLM the tokens come from another engine (other kernels, weights
synced once a step), so TRL corrects the loss by the ratio of the trainer's probability of
each token to the sampler's (`vllm_importance_sampling_correction`, on by default), and it
reads the sampler's from the rollout's `logprobs`. They are *processed* logprobs (after
temperature and top-p), what TRL asks vLLM for (`logprobs_mode="processed_logprobs"`) and
what the trainer recomputes; transformers' processed scores give the same, so a rollout has
logprobs whatever generated it.

TRL pushes the policy's weights into vLLM itself before it calls `rollout_func` at each new
step (`GRPOTrainer._generate`; under ZeRO-3 it gathers the shards for that itself), so
nothing here syncs weights, and under vLLM the rollout does not unwrap (gather) the
trainer's model at all. Every backend is given token ids, the episode as the rollout
rendered it (`chat_template_kwargs` included), never messages: no backend renders a chat
template, so transformers, colocated vLLM and a vLLM server all continue the same prompt
(a server's own chat template and its defaults, such as Qwen3's thinking, never apply).

We call vLLM per turn rather than through `VLLMGeneration.generate`, which generates one
whole completion per prompt (`max_completion_length`) and, in server mode, gathers every
rank's prompts in a collective that ranks whose sessions ended at different turns would
leave waiting.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from therapygym.errors import ConfigError

VLLM_MODES = ("colocate", "server")


@dataclass(frozen=True)
class Generated:
    """One policy turn: its token ids (through the end-of-turn token when it stopped) and
    each token's sampling logprob (NaN where vLLM reported none; TRL neutralises those)."""

    token_ids: list[int]
    logprobs: list[float]


class Generator(Protocol):
    """One turn for each context (token ids of the whole episode so far), in order."""

    def generate(self, contexts: list[list[int]]) -> list[Generated]: ...


@dataclass(frozen=True)
class Sampling:
    """TRL's sampling settings (`GRPOConfig`), one turn's worth of tokens at most."""

    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    min_p: float | None
    repetition_penalty: float

    @classmethod
    def from_args(cls, args: Any, max_tokens: int) -> Sampling:
        return cls(
            max_tokens=max_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            min_p=args.min_p,
            repetition_penalty=args.repetition_penalty,
        )

    def vllm(self) -> dict[str, Any]:
        """The same settings as vLLM's sampling parameters, as TRL passes them."""
        return {
            "repetition_penalty": self.repetition_penalty,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": 0.0 if self.min_p is None else self.min_p,
        }


class HFGenerator:
    """transformers' `generate` on the trainer's own (unwrapped) model: sampling as TRL's
    non-vLLM path samples, the logprobs from the processed scores."""

    def __init__(self, model: Any, tokenizer: Any, sampling: Sampling) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.sampling = sampling

    def generate(self, contexts: list[list[int]]) -> list[Generated]:
        import torch

        width = max(len(ids) for ids in contexts)
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in contexts])
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in contexts])
        s = self.sampling
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model.generate(
                    input_ids=input_ids.to(self.model.device),
                    attention_mask=attention.to(self.model.device),
                    max_new_tokens=s.max_tokens,
                    do_sample=True,
                    temperature=s.temperature,
                    top_p=s.top_p,
                    top_k=s.top_k,
                    min_p=s.min_p,
                    repetition_penalty=s.repetition_penalty,
                    pad_token_id=pad,
                    output_scores=True,
                    return_dict_in_generate=True,
                )
                new = out.sequences[:, width:]
                # one step at a time: stacking the scores would hold a second (batch, turn,
                # vocabulary) copy of them
                logprobs = torch.stack(
                    [
                        step.float().log_softmax(-1).gather(-1, new[:, t : t + 1]).squeeze(-1)
                        for t, step in enumerate(out.scores)
                    ],
                    dim=1,
                )
        finally:
            self.model.train(was_training)
        turns = []
        for row, lps in zip(new.tolist(), logprobs.tolist(), strict=True):
            end = row.index(eos) + 1 if eos in row else len(row)
            turns.append(Generated(row[:end], lps[:end]))
        return turns


def _first_logprobs(per_token: list[list[float | None]]) -> list[float]:
    """The sampled token's logprob from vLLM's per-token lists (asked with logprobs=0, the
    sampled token's own comes first); None, vLLM's NaN, back to NaN."""
    return [math.nan if lp[0] is None else lp[0] for lp in per_token]


class VLLMColocate:
    """vLLM in this process (`vllm_mode: colocate`): TRL's `LLM`, one request per context."""

    def __init__(self, llm: Any, sampling: Sampling, generation_kwargs: Mapping[str, Any]) -> None:
        self.llm = llm
        self.sampling = sampling
        self.generation_kwargs = dict(generation_kwargs)

    def generate(self, contexts: list[list[int]]) -> list[Generated]:
        from trl.generation.vllm_generation import extract_logprobs
        from vllm import SamplingParams

        params = SamplingParams(
            **self.sampling.vllm(),
            **self.generation_kwargs,
            n=1,
            max_tokens=self.sampling.max_tokens,
            logprobs=0,
        )
        outputs = self.llm.generate(
            [{"prompt_token_ids": ids} for ids in contexts], sampling_params=params, use_tqdm=False
        )
        logprobs, _ = extract_logprobs(outputs)
        if logprobs is None:
            raise RuntimeError("vLLM returned no logprobs although they were asked for")
        token_ids = [list(o.token_ids) for out in outputs for o in out.outputs]
        return [
            Generated(t, _first_logprobs(lp)) for t, lp in zip(token_ids, logprobs, strict=True)
        ]


class VLLMServer:
    """A vLLM server (`vllm_mode: server`) through TRL's `VLLMClient`: every rank sends its
    own sessions' turns (rank 0 also pushes the weights, before anyone generates)."""

    def __init__(
        self, client: Any, sampling: Sampling, generation_kwargs: Mapping[str, Any]
    ) -> None:
        self.client = client
        self.sampling = sampling
        self.generation_kwargs = dict(generation_kwargs)

    def generate(self, contexts: list[list[int]]) -> list[Generated]:
        out = self.client.generate(
            prompts=contexts,
            n=1,
            max_tokens=self.sampling.max_tokens,
            logprobs=0,
            generation_kwargs=self.generation_kwargs,
            **self.sampling.vllm(),
        )
        if out["logprobs"] is None:
            raise RuntimeError("the vLLM server returned no logprobs although they were asked for")
        return [
            Generated(list(t), _first_logprobs(lp))
            for t, lp in zip(out["completion_ids"], out["logprobs"], strict=True)
        ]


_OURS = ("n", "max_tokens", "logprobs", *Sampling.__dataclass_fields__)
_clients: dict[str, Any] = {}  # other ranks' own HTTP clients, by server URL


def _server_client(vllm: Any) -> Any:
    """The main process's client is TRL's (it holds the weight-sync communicator); other
    ranks get one of their own for generation only."""
    own = getattr(vllm, "vllm_client", None)
    if own is not None:
        return own
    url = vllm.server_base_url or f"http://{vllm.server_host}:{vllm.server_port}"
    if url not in _clients:
        from trl.generation.vllm_client import VLLMClient

        _clients[url] = VLLMClient(base_url=url, connection_timeout=vllm.server_timeout)
    return _clients[url]


def rollout_generator(trainer: Any, model: Any, max_tokens: int) -> Generator:
    """The backend for this rollout call: TRL's vLLM engine when the trainer has one
    (`model` is then None: nothing unwrapped it), else `model` (the trainer's policy,
    unwrapped for generation) through transformers."""
    args = trainer.args
    sampling = Sampling.from_args(args, max_tokens)
    if not args.use_vllm:
        return HFGenerator(model, trainer.processing_class, sampling)
    vllm = trainer.vllm_generation
    # a turn is one sample of at most `max_tokens` with its logprobs, at the sampling
    # settings the trainer recomputes them with: generation_kwargs cannot change those
    extra = {k: v for k, v in (args.generation_kwargs or {}).items() if k not in _OURS}
    if vllm.mode == "colocate":
        return VLLMColocate(vllm.llm, sampling, extra)
    # rank 0 pushed this step's weights before calling us; no rank generates before that
    trainer.accelerator.wait_for_everyone()
    return VLLMServer(_server_client(vllm), sampling, extra)


def check_generation(grpo: Mapping[str, Any], args: Any, where: str) -> None:
    """Refuse, in one line naming the field, a generation or precision setting this rollout
    cannot honour. `grpo` is the config's own `grpo:` block (what was asked for), `args`
    the GRPOConfig built from it (with TRL's defaults and ours)."""

    def refuse(field: str, why: str) -> None:
        raise ConfigError(f"{where}: grpo.{field}: {why}")

    if args.vllm_mode not in VLLM_MODES:
        refuse("vllm_mode", f"'{args.vllm_mode}' is not one of {', '.join(VLLM_MODES)}")
    for name in ("bf16", "fp16"):
        if grpo.get(name) and args.use_cpu:
            refuse(
                name,
                f"{name} weights need a GPU, and use_cpu is true (our default) so the policy "
                "trains on the CPU in float32; set use_cpu: false on a GPU machine",
            )
    if not args.use_vllm:
        return
    import torch

    if args.use_cpu or not torch.cuda.is_available():
        refuse(
            "use_vllm",
            "vLLM generates on a GPU and this run trains on the CPU (use_cpu is true, our "
            "default, or no GPU is visible); set use_cpu: false on a GPU machine",
        )
    if importlib.util.find_spec("vllm") is None:
        refuse("use_vllm", "vLLM is not installed here: pip install 'trl[vllm]'")
    if args.vllm_enable_sleep_mode:
        refuse(
            "vllm_enable_sleep_mode",
            "the multi-turn rollout calls vLLM once per turn, and sleep mode frees its "
            "weights after every call; leave it false",
        )
    if args.vllm_mode == "colocate" and args.vllm_tensor_parallel_size > 1:
        refuse(
            "vllm_tensor_parallel_size",
            "colocated tensor parallelism needs every rank of a group to generate the same "
            "prompts, and each rank plays its own sessions; use 1, or vllm_mode: server",
        )


def policy_placement(args: Any) -> tuple[Any, Any]:
    """(dtype, device) to load the policy with under the trainer's args: bfloat16 on a GPU
    when `bf16` (a 4B policy in float32 is 16 GB before any optimiser state; TRL's LoRA
    adapters stay float32 on it), float32 on the CPU (TRL autocasts there). The device is
    this process's (accelerate's); None under DeepSpeed, which places the weights itself."""
    import torch

    device = args.device
    if device.type == "cpu":
        return torch.float32, None
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    return dtype, None if args.deepspeed else device
