"""A local transformers model, optionally with a LoRA adapter: `hf:<model>[?adapter=DIR]`.

<model> is a model directory saved with `save_pretrained`, a `.gguf` file (transformers
dequantises it to float32, once: `dequantised` keeps the result), or `smollm2` for the
embedded model's GGUF. This is the backend that evaluates what `therapygym train`
produced: `hf:smollm2?adapter=runs/smoke/adapter`.
Needs the `[train]` extra (torch, transformers, peft); nothing is fetched from a hub
(`local_files_only`).

Generation runs in a worker thread, one call at a time (a CPU forward pass already uses
every core); temperature 0 is greedy and reproducible, sampling is seeded per call. A
JSON schema (a judge call) constrains the output through llguidance (`hf_constrained`), so a
trained judge (`therapygym train-judge`) judges on this backend. `chat_template_kwargs=`
(a URL-encoded JSON object) reaches the chat template, so a policy trained with
`{enable_thinking: false}` is evaluated as it was trained; a key the template never names
is refused when the spec is built, from the tokenizer alone (`check_template_kwargs`), so
before any session.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from therapygym.errors import ConfigError, ModelNotInstalledError
from therapygym.models.base import BaseChatModel, PermanentError, RawReply
from therapygym.models.cache import ResponseCache
from therapygym.models.dequantised import convert, converted_folder, is_converted, plain
from therapygym.models.hf_constrained import NEEDS_LLGUIDANCE, schema_generation_kwargs
from therapygym.models.spec import ModelConfig
from therapygym.models.types import ChatRequest
from therapygym.records import canonical_json

NEEDS_TRAIN_EXTRA = "the hf backend needs torch and transformers: pip install 'therapygym[train]'"
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def model_source(model: str) -> tuple[Path, str | None]:
    """(directory, gguf file name or None) for transformers' `from_pretrained`."""
    if model == "smollm2":
        from therapygym.models.llamacpp import embedded_model_path

        path = embedded_model_path()
        return path.parent, path.name
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, path.name
    if path.is_dir() and (path / "config.json").is_file():
        return path, None
    raise ModelNotInstalledError(
        f"hf model '{model}': expected smollm2, a .gguf file, or a directory with config.json "
        "(saved with save_pretrained)"
    )


def on_disk(model: str) -> bool:
    """Whether `model` names a model that is here (`model_source` would find it)."""
    try:
        model_source(model)
    except ModelNotInstalledError:
        return False
    return True


def _adapter_digest(adapter: Path) -> str:
    for name in _ADAPTER_WEIGHTS:
        if (adapter / name).is_file():
            return hashlib.sha256((adapter / name).read_bytes()).hexdigest()[:16]
    raise ModelNotInstalledError(
        f"adapter {adapter}: no {' or '.join(_ADAPTER_WEIGHTS)} (a peft save_pretrained folder)"
    )


def check_template_kwargs(tokenizer: Any, kwargs: Mapping[str, Any], model: str) -> None:
    """Refuse `chat_template_kwargs` keys that the model's chat template never names.

    `apply_chat_template` hands every extra keyword to the template, which ignores those it
    does not read, so a misspelt `enable_thinking` (or a key of another model family) would
    leave Qwen3's thinking on in training and evaluation alike, silently. A key that is not
    a word of the template's source cannot be read by it. The check reads the source rather
    than parsing it, so tags a library adds to Jinja (transformers' `{% generation %}`) do
    not matter, and it never refuses a key the template uses. Every named template counts
    (transformers picks one by the call, e.g. `tool_use` when tools are given)."""
    template = tokenizer.chat_template
    if not kwargs or not template:
        return  # no template at all: apply_chat_template itself says so
    source = "\n".join(template.values()) if isinstance(template, dict) else str(template)
    unread = [key for key in kwargs if not re.search(rf"\b{re.escape(key)}\b", source)]
    if unread:
        these = "this" if len(unread) == 1 else "these"
        raise ConfigError(
            f"chat_template_kwargs: {', '.join(unread)}: the chat template of {model} never "
            f"names {these}, so it would change nothing; check the spelling, or leave it out "
            "for this model"
        )


def _source_kwargs(model: str, *, convert_now: bool) -> tuple[Path, dict[str, Any]]:
    """The folder to load from and `from_pretrained`'s keywords (offline). A GGUF file is
    read from its converted folder when the cache holds one, or, with `convert_now`, once
    one is made (`dequantised`); else from the file itself."""
    folder, gguf = model_source(model)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if gguf:
        converted = converted_folder(folder / gguf)
        if is_converted(converted) or (convert_now and convert(folder / gguf, converted)):
            return converted, kwargs
        kwargs["gguf_file"] = gguf
    return folder, kwargs


def load_tokenizer(model: str) -> Any:
    """The tokenizer of `model` alone (no weights): what a check of its chat template needs
    (from a GGUF file's converted folder where there is one; never converts for it)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ModelNotInstalledError(NEEDS_TRAIN_EXTRA) from None
    folder, kwargs = _source_kwargs(model, convert_now=False)
    return AutoTokenizer.from_pretrained(folder, **kwargs)


def load_causal_lm(
    model: str, adapter: str | None = None, *, dtype: Any = None, device: Any = None
) -> tuple[Any, Any]:
    """(model, tokenizer), with the adapter applied when given: on the CPU in float32
    unless `dtype` (a torch dtype) and `device` say otherwise, as training on a GPU does
    (`rl/generation.policy_placement`: bfloat16 on this process's GPU). A GGUF file is
    converted once and read from the cache after that (`dequantised`)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ModelNotInstalledError(NEEDS_TRAIN_EXTRA) from None
    folder, kwargs = _source_kwargs(model, convert_now=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype or torch.float32, **kwargs)
    if "gguf_file" in kwargs:  # dequantised while loading: a plain model from here on (trainable)
        plain(lm)
    if adapter:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, adapter)
    if device is not None:
        lm.to(device)
    lm.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm, tokenizer


class TransformersModel(BaseChatModel):
    """A causal LM run by transformers in this process."""

    def __init__(self, config: ModelConfig, cache: ResponseCache | None = None) -> None:
        super().__init__(config, cache)
        if importlib.util.find_spec("transformers") is None:
            raise ModelNotInstalledError(NEEDS_TRAIN_EXTRA)
        folder, gguf = model_source(config.model)
        self._weights = folder / gguf if gguf else folder
        self._adapter = Path(config.adapter).expanduser() if config.adapter else None
        self._adapter_id = _adapter_digest(self._adapter) if self._adapter else ""
        if config.chat_template_kwargs:  # its tokenizer only: refused before any call
            tokenizer = load_tokenizer(config.model)
            check_template_kwargs(tokenizer, config.chat_template_kwargs, config.label)
        self._loaded: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        """Weights, adapter and chat-template options: what changes the answers (options
        only when set, so caches made before the option still hit)."""
        adapter = f"+adapter:{self._adapter_id}" if self._adapter else ""
        template = self.config.chat_template_kwargs
        options = f"?chat_template_kwargs={canonical_json(template)}" if template else ""
        return f"hf:{self._weights.resolve()}{adapter}{options}"

    def _model(self) -> tuple[Any, Any]:
        with self._lock:
            if self._loaded is None:
                adapter = str(self._adapter) if self._adapter else None
                self._loaded = load_causal_lm(self.config.model, adapter)
            return self._loaded

    def _generate(self, request: ChatRequest) -> RawReply:
        import torch

        lm, tokenizer = self._model()
        with self._lock:
            inputs = tokenizer.apply_chat_template(
                [dict(m) for m in request.messages],
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
                **(self.config.chat_template_kwargs or {}),
            )
            sampling: dict[str, Any] = {"do_sample": request.temperature > 0}
            if request.temperature > 0:
                torch.manual_seed(request.seed)
                sampling["temperature"] = request.temperature
            with torch.no_grad():
                out = lm.generate(
                    **inputs,
                    max_new_tokens=request.max_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    **sampling,
                    **schema_generation_kwargs(
                        tokenizer, request.json_schema, inputs["input_ids"].shape[1]
                    ),
                )
        new = out[0][inputs["input_ids"].shape[1] :]
        finished = len(new) > 0 and int(new[-1]) == tokenizer.eos_token_id
        return RawReply(
            text=tokenizer.decode(new, skip_special_tokens=True).strip(),
            prompt_tokens=int(inputs["input_ids"].shape[1]),
            completion_tokens=len(new),
            model=self.config.label,
            finish_reason="stop" if finished else "length",
        )

    async def _complete(self, request: ChatRequest) -> RawReply:
        if request.json_schema is not None and importlib.util.find_spec("llguidance") is None:
            raise PermanentError(NEEDS_LLGUIDANCE)  # the caller's error names the model
        try:
            return await asyncio.to_thread(self._generate, request)
        except (RuntimeError, ValueError, OSError) as err:
            raise PermanentError(f"{type(err).__name__}: {err}") from None
