"""Model specs: the strings and YAML entries that pick a backend.

Spec strings, for the command line:

    openai:<model>[?base_url=...&api_key_env=...&concurrency=8&timeout_s=60&max_retries=4]
          [&schema_dialect=auto|hosted-strict|full&reasoning_effort=low|medium|high]
          [&extra_body=<JSON object, URL-encoded>&extra_headers=<JSON object, URL-encoded>]
    anthropic:<model>[?api_key_env=...&base_url=...&concurrency=...&extra_body=...]
                                       Anthropic's Messages API (models/anthropic.py)
    openai/<model>, anthropic/<model>, vllm/<model>, ollama/<model>, openrouter/<model>,
    together/<model>, groq/<model>     provider aliases as Inspect AI and LiteLLM write
                                       them, expanded by models/aliases.py
    local:smollm2                      the embedded SmolLM2-135M-Instruct (offline)
    gguf:/path/to/model.gguf           any GGUF file, run in-process by llama.cpp
    python:package.module:function     a user's callable
    http:/path/to/bot.yaml             any HTTP chatbot, mapped by a YAML file
    hf:<dir|file.gguf|smollm2>[?adapter=DIR&chat_template_kwargs=<JSON object, URL-encoded>]
                                       a local transformers model (+ LoRA adapter); [train] extra
    <name>                             an entry of a models file (YAML)
    <plug-in>:<target>                 a backend another package registers (models/backends.py)

A models file names entries with the same fields, plus optional prices:

    models:
      qwen-judge:
        backend: openai
        model: Qwen/Qwen2.5-7B-Instruct
        base_url: http://127.0.0.1:8000/v1
        api_key_env: VLLM_API_KEY
        concurrency: 32
        extra_body:              # merged into every request body
          chat_template_kwargs: {enable_thinking: false}
        extra_headers:           # sent as headers; ${VAR} is read from the environment
          X-Gateway-Key: ${GATEWAY_KEY}
    prices:                # USD per million tokens, by model name; optional
      gpt-4o-mini: {input_per_mtok: 0.15, output_per_mtok: 0.60}
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from therapygym.errors import (
    ConfigError,
    MissingAPIKeyError,
    ModelSpecError,
    TherapygymError,
    describe_validation_error,
)
from therapygym.models.aliases import expand_alias, is_alias
from therapygym.models.backends import BACKENDS, spec_help
from therapygym.models.dialects import SchemaDialect
from therapygym.yamlfile import read_yaml_mapping

MODELS_FILE_ENV = "THERAPYGYM_MODELS"
# Request keys extra_body may not replace: the layer reads one non-streamed answer to the
# messages it sent, from the model it names (and keys on them in the cache).
RESERVED_BODY_KEYS = ("model", "messages", "stream")
# Options a spec string gives as JSON objects (URL-encoded); in a models file, mappings.
_JSON_OPTIONS = ("extra_body", "extra_headers", "chat_template_kwargs")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


class ModelConfig(BaseModel):
    """One model: which backend, which model, and how to call it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str
    model: str = Field(min_length=1)
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int | None = Field(None, ge=1, le=4096)
    timeout_s: float | None = Field(
        None, gt=0, description="Per attempt; default 120 s, or 1800 s for in-process models."
    )
    max_retries: int = Field(4, ge=0, le=20)
    backoff_initial_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    n_ctx: int = Field(8192, ge=512, description="Context per slot for local/gguf models.")
    threads: int | None = Field(None, ge=1, description="CPU threads for local/gguf models.")
    slots: int | None = Field(
        None,
        ge=1,
        le=64,
        description="llama.cpp slots for local/gguf models, each a context of n_ctx with "
        "its own prompt cache, at least concurrency; given, a call reuses a slot only if it "
        "shares half its prompt, so prompt families keep a slot each (slots=8: a judge's "
        "CTRS and five per_group safety prompts).",
    )
    adapter: str | None = Field(None, description="A LoRA adapter folder, for hf models.")
    chat_template_kwargs: dict[str, Any] | None = Field(
        None,
        description="Passed to the chat template, for hf models (e.g. {enable_thinking: "
        "false} for a Qwen3 policy trained with it); a server takes it in extra_body.",
    )
    price: Price | None = None
    name: str | None = Field(None, description="The models-file entry name, if any.")
    schema_dialect: SchemaDialect = Field(
        "auto",
        description="How a JSON schema is sent (models/dialects.py): hosted-strict for "
        "OpenAI-style strict mode, full for local servers; auto picks by host.",
    )
    reasoning_effort: Literal["low", "medium", "high"] | None = Field(
        None, description="Sent to reasoning models only when set."
    )
    extra_body: dict[str, Any] | None = Field(
        None,
        description="Merged into every request body (vLLM guided decoding, chat template "
        "options, provider routing); part of the cache identity.",
    )
    extra_headers: dict[str, SecretStr] | None = Field(
        None,
        description="Sent as headers; ${VAR} in a value is read from the environment. "
        "Values are masked in messages and never stored; only the names enter the "
        "cache identity.",
    )

    @field_validator("extra_body")
    @classmethod
    def _body_keeps_the_request(cls, body: dict[str, Any] | None) -> dict[str, Any] | None:
        if body and (reserved := sorted(set(body) & set(RESERVED_BODY_KEYS))):
            raise ValueError(
                f"may not set {', '.join(reserved)} (the request's own; allowed: any other key)"
            )
        return body

    @field_validator("extra_headers", mode="before")
    @classmethod
    def _header_names_and_values(cls, headers: Any) -> Any:
        """Names must be HTTP tokens and values text. Raised on the whole mapping, so an
        error never quotes a value (it may be a key)."""
        if not isinstance(headers, dict):
            return headers
        for name, value in headers.items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not an HTTP header name")
            if not isinstance(value, str | SecretStr):
                raise ValueError(f"header {name}: the value must be text (quote it)")
        return headers

    def header_values(self) -> dict[str, str]:
        """`extra_headers` with each `${VAR}` read from the environment now, at request
        time, so a value is never held in a stored spec. A missing variable is an error
        that names the header and the variable, never a value."""
        headers: dict[str, str] = {}
        for name, secret in (self.extra_headers or {}).items():

            def lookup(match: re.Match[str], header: str = name) -> str:
                value = os.environ.get(match.group(1))
                if not value:
                    raise MissingAPIKeyError(
                        f"model {self.label}: environment variable {match.group(1)} is not "
                        f"set (extra_headers {header}); export it before running"
                    )
                return value

            headers[name] = _ENV_REF.sub(lookup, secret.get_secret_value())
        return headers

    @field_validator("backend", mode="before")
    @classmethod
    def _registered_backend(cls, name: Any) -> str:
        """Any backend in the registry, plug-ins included; the error lists them as a choice
        (as a `Literal` field would), so a models file's typo shows what is allowed."""
        if not isinstance(name, str) or name not in BACKENDS:
            *rest, last = [f"'{n}'" for n in BACKENDS.names()]
            expected = f"{', '.join(rest)} or {last}" if rest else last
            raise PydanticCustomError(
                "literal_error", "Input should be {expected}", {"expected": expected}
            )
        return name

    @property
    def max_concurrency(self) -> int:
        return self.concurrency or BACKENDS.get(self.backend).default_concurrency

    def limit_for(self, in_flight: int) -> int:
        """The requests in flight this model allows in a batch that keeps `in_flight`
        sessions or judgement units going (each waits on one call at a time).

        A spec's own `concurrency=` is kept as given (`undercuts` says when it holds the
        batch back). Without one, a model behind a server (openai, anthropic, http, a
        python callable, any plug-in not marked in_process) takes the batch's figure: the
        server, not this process, sets the pace, and `--concurrency` is how the user sized
        it. A fixed default of 16 held a run at `--concurrency 64` to 32 calls in flight
        (16 for the patient model, 16 for the therapist) and said nothing. An in-process
        model (local:, gguf:, hf:) keeps its backend's small default: its requests share
        this machine's cores, where more at once only slow each other down, and each
        llama.cpp slot holds a context of its own."""
        if self.concurrency is not None or self.in_process:
            return self.max_concurrency
        return max(self.max_concurrency, in_flight)

    def undercuts(self, in_flight: int) -> bool:
        """Whether the spec's own `concurrency=` holds a batch of `in_flight` below its
        figure: a server model's explicit limit (an in-process one's is about cores)."""
        return self.concurrency is not None and not self.in_process and self.concurrency < in_flight

    @property
    def in_process(self) -> bool:
        """Run on this machine's cores (llama.cpp or transformers), not behind a server."""
        return BACKENDS.get(self.backend).in_process

    @property
    def request_timeout_s(self) -> float:
        """In-process generation cannot be cancelled mid-way (a timed-out attempt keeps its
        llama.cpp slot busy), so local models get a long timeout; servers get 120 s."""
        if self.timeout_s is not None:
            return self.timeout_s
        return 1800.0 if self.in_process else 120.0

    @property
    def label(self) -> str:
        """A short, secret-free name for tables and logs."""
        if self.name:
            return self.name
        suffix = f"@{self.base_url}" if self.base_url else ""
        adapter = f"+{self.adapter}" if self.adapter else ""
        return f"{self.backend}:{self.model}{adapter}{suffix}"


class ModelsFile(BaseModel):
    """The YAML models file."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)


def parse_spec(spec: str) -> ModelConfig:
    """Parse a spec string (not a models-file name) into a `ModelConfig`."""
    text = expand_alias(spec.strip())  # openai/gpt-4o, vllm/... (models/aliases.py)
    head, _, query = text.partition("?")
    backend, sep, target = head.partition(":")
    if not sep or backend not in BACKENDS or not target:
        raise ModelSpecError(f"unknown model spec '{spec}': {spec_help()}")
    options: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    for name in _JSON_OPTIONS:
        if name in options:
            options[name] = _json_option(spec, name, options[name])
    chosen = BACKENDS.get(backend)
    chosen.check_target(spec, target)
    for name in ("adapter", "chat_template_kwargs"):
        if name in options and not chosen.adapter:
            raise ModelSpecError(f"model spec '{spec}': {name}= applies to hf: models only")
    if "slots" in options and not chosen.slots:
        raise ModelSpecError(f"model spec '{spec}': slots= applies to local: and gguf: models only")
    allowed = set(ModelConfig.model_fields) - {"backend", "model", "name", "price"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ModelSpecError(
            f"model spec '{spec}': unknown option(s) {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )
    try:
        return ModelConfig(backend=backend, model=target, **options)
    except ValidationError as err:
        raise ModelSpecError(describe_validation_error(err, f"model spec '{spec}'")) from None


def _json_option(spec: str, name: str, text: str) -> dict[str, Any]:
    """A spec string's JSON-object option (URL-decoded already). The error names the
    option, never its text: extra_headers may carry a key."""
    try:
        value = json.loads(text)
    except ValueError as err:
        raise ModelSpecError(
            f"model spec {spec.partition('?')[0]}: option {name} is not valid JSON ({err.msg} "
            f"at character {err.pos}); give a URL-encoded JSON object, e.g. "
            f"{name}=%7B%22key%22%3A%22value%22%7D, or set it in a models file"
        ) from None
    if not isinstance(value, dict):
        raise ModelSpecError(
            f"model spec {spec.partition('?')[0]}: option {name} must be a JSON object "
            f"(got a {type(value).__name__})"
        )
    if name == "extra_headers":
        literal = [k for k, v in value.items() if not _ENV_REF.fullmatch(str(v))]
        if literal:
            raise ModelSpecError(
                f"model spec {spec.partition('?')[0]}: extra_headers value of "
                f"{', '.join(map(str, literal))} must be a ${{VAR}} reference to an environment "
                "variable (a spec string is stored with the run and shown in tables); put "
                "literal values in a models file"
            )
    return value


def load_models_file(path: Path | str) -> ModelsFile:
    """Read and validate a models file; every error names the file and field."""
    p = Path(path)
    raw = read_yaml_mapping(p, "models file", ConfigError)
    try:
        parsed = ModelsFile.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, f"models file {p}")) from None
    for name, entry in parsed.models.items():
        try:
            ModelConfig.model_validate({**entry, "name": name})
        except ValidationError as err:
            raise ConfigError(
                describe_validation_error(err, f"models file {p}, model '{name}'")
            ) from None
    return parsed


def default_models_file() -> Path | None:
    """The models file named by `$THERAPYGYM_MODELS`, if any."""
    env = os.environ.get(MODELS_FILE_ENV)
    return Path(env).expanduser() if env else None


def resolve_spec(spec: str | ModelConfig, models_file: Path | str | None = None) -> ModelConfig:
    """Turn a spec string, a models-file name or a ready config into a `ModelConfig`.

    Prices from the models file apply to any spec whose model name they list.
    """
    if isinstance(spec, ModelConfig):
        return spec
    path = models_file if models_file is not None else default_models_file()
    catalog = load_models_file(path) if path is not None else ModelsFile()
    head = spec.partition("?")[0]
    if spec in catalog.models:
        config = ModelConfig.model_validate({**catalog.models[spec], "name": spec})
    elif head.partition(":")[0] in BACKENDS or is_alias(spec):
        config = parse_spec(spec)
    else:
        known = ", ".join(sorted(catalog.models)) or "none (no models file given)"
        raise ModelSpecError(f"unknown model spec '{spec}': {spec_help()}; named models: {known}")
    if config.price is None and config.model in catalog.prices:
        config = config.model_copy(update={"price": catalog.prices[config.model]})
    return config


def is_embedded(spec: str, models_file: Path | str | None = None) -> bool:
    """Whether `spec` (a spec, a models-file name, or the label tables show) is the embedded
    135M model: its scores carry no clinical meaning, and every place that prints them says
    so. A spec that no longer resolves (a models file gone) is taken as not embedded."""
    try:
        return resolve_spec(spec, models_file).backend == "local"
    except TherapygymError:
        return False
