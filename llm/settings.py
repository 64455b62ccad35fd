"""`GenerationSettings`: the one definition of every generation knob, its range, default and label.

The Chainlit sliders, the LangChain classes' fields, the REST server's requests and the MLC and Nano
APIs all come from these fields, so a range is written once. `EngineConfig` holds what it takes to
load a model, read from `HEARTH_*` environment variables.
"""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from native import SamplingParams


def problems(exc: ValidationError, whole: str = "settings") -> str:
    """A validation error as one line a person reads: "max_new_tokens: Input should be ...; ...".
    `whole` names the model itself where an error is about no one field."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or whole}: {e['msg']}" for e in exc.errors())


def _ui(label: str, widget: str, step: float | None = None) -> dict:
    return {"label": label, "widget": widget, "step": step}


class GenerationFields(BaseModel):
    """The fields themselves, shared by `GenerationSettings` and the LangChain classes."""

    temperature: float = Field(
        0.5,
        ge=0.0,
        le=2.0,
        json_schema_extra=_ui("Temperature", "slider", 0.1),
        description="Randomness of sampling; 0 always picks the most likely token (deterministic).",
    )
    repetition_penalty: float = Field(
        1.1,
        ge=0.1,
        le=2.0,
        json_schema_extra=_ui("Repetition Penalty", "slider", 0.1),
        description="Above 1 discourages repeating recent tokens; 1 is off.",
    )
    top_p: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        json_schema_extra=_ui("Top P", "slider", 0.1),
        description="Sample only from the most likely tokens that together reach this probability.",
    )
    top_k: int = Field(
        50,
        ge=0,
        le=100,
        json_schema_extra=_ui("Top K", "slider", 1),
        description="Sample only from this many most likely tokens; 0 keeps them all.",
    )
    max_new_tokens: int = Field(
        128,
        ge=1,
        # No upper bound here: the model's context is the limit (`reply_limit`), known only once it
        # is loaded. A request that cannot fit is refused there (ContextOverflow), not at 1024.
        json_schema_extra=_ui("Max New Tokens", "slider", 1),
        validation_alias=AliasChoices("max_new_tokens", "max_tokens"),
        description="The reply ends (finish reason `length`) after this many tokens.",
    )
    streaming: bool = Field(
        True,
        json_schema_extra=_ui("Stream Tokens", "switch"),
        description="Show the reply token by token as it is generated.",
    )
    system_prompt: str | None = Field(
        None,
        max_length=8000,
        json_schema_extra=_ui("System Prompt", "text"),
        description="Instructions placed before the conversation; empty uses the model's own default.",
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=2**32 - 1,
        description="A fixed seed makes sampling reproducible at any temperature; empty draws a new one.",
    )
    stop: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Generation ends when any of these strings appears; they are not shown.",
    )
    min_p: float = Field(
        0.0, ge=0.0, le=1.0, description="Drop tokens less likely than this fraction of the most likely one."
    )
    presence_penalty: float = Field(
        0.0,
        ge=-2.0,
        le=2.0,
        description="Penalise tokens that already appeared, once each (OpenAI's meaning).",
    )
    frequency_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="Penalise tokens by how often they already appeared (OpenAI's)."
    )


# The slider's end when a remote server does not say how long its context is.
UNKNOWN_CONTEXT = 4096


def reply_limit(n_ctx: int | None) -> int:
    """The most new tokens a reply can have in a context of `n_ctx` tokens: all but one, since a prompt
    holds at least one token. The settings panel's max-new-tokens slider ends here."""
    return max(1, (n_ctx or UNKNOWN_CONTEXT) - 1)


class GenerationSettings(GenerationFields):
    """Validated generation settings: unknown keys and out-of-range values are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def sampling(self, extra_stop: tuple[str, ...] | list[str] = ()) -> SamplingParams:
        """The engine's view of these settings, with the chat template's stop strings added."""
        stop = tuple(dict.fromkeys([*self.stop, *extra_stop]))
        return SamplingParams(
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            min_p=self.min_p,
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            seed=self.seed,
            max_new_tokens=self.max_new_tokens,
            stop=stop,
        )

    @classmethod
    def panel_fields(cls) -> list[tuple[str, dict, object]]:
        """(field name, its UI metadata plus min/max, current default) for every field shown in a panel."""
        rows = []
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra
            if not isinstance(extra, dict) or "widget" not in extra:
                continue
            bounds = {"min": None, "max": None}
            for rule in info.metadata:
                bounds["min"] = getattr(rule, "ge", bounds["min"])
                bounds["max"] = getattr(rule, "le", bounds["max"])
            rows.append((name, {**extra, **bounds, "description": info.description}, info.default))
        return rows


class EngineConfig(BaseSettings):
    """How to load the model: from `HEARTH_*` environment variables (or arguments)."""

    model_config = SettingsConfigDict(env_prefix="HEARTH_", extra="ignore")

    model: str | None = Field(None, description="Model path, folder, name in models/ or catalog name.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N, metal or vulkan.")
    backend: str | None = Field(
        None,
        description="llama.cpp (the default) or torch (PyTorch and transformers: `make install TORCH=1`).",
    )
    ctx_size: int | None = Field(
        None, ge=64, description="Each session's context in tokens (default: up to 4096)."
    )
    threads: int | None = Field(None, ge=1, description="CPU threads (default: the physical cores).")
    parallel: int | None = Field(
        None, ge=1, le=64, description="Sessions served at once (default: fits memory)."
    )
    remote_models: str = Field(
        "",
        description="OpenAI-compatible servers the app's model picker offers, comma-separated "
        "`[NAME=]URL[#MODEL_UID]` (e.g. `big=http://gpu-box:8000/v1`).",
    )
    unload_after: float = Field(
        900.0,
        description="Seconds a model nobody uses stays loaded in the app; 0 or less keeps it forever.",
    )
