"""`ServerSettings`: what the REST server needs, from CLI flags, else `HEARTH_*` variables, else defaults.

It extends `EngineConfig` (device, ctx_size, threads, parallel), so one variable means the same thing
to the app and to the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from llm.net import is_loopback
from llm.settings import EngineConfig


class ServerSettings(EngineConfig):
    """The REST server's configuration; the CLI flags' help texts are these descriptions."""

    model: Annotated[list[str], NoDecode] = Field(  # type: ignore[assignment]
        default_factory=lambda: ["default"],
        description="A model to serve, as NAME=MODEL (served under NAME) or MODEL (a path, folder, name in "
        "models/, catalog name, or http(s):// URL of another OpenAI-compatible server). Repeatable; "
        "HEARTH_MODEL takes a comma-separated list.",
    )
    lib_path: Path | None = Field(
        None,
        description="Folder holding the llama.cpp shared library to load (libllama.so) instead of "
        "the one bundled with llama-cpp-python.",
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on.")
    api_key: SecretStr | None = Field(
        None, description="Require `Authorization: Bearer KEY` on every API call (not on /health and /docs)."
    )
    insecure: bool = Field(False, description="Allow a non-loopback host without an API key.")
    strict_model_names: bool = Field(
        False,
        description="Refuse (404) a request naming a model not served even when one model is served; "
        "by default that one model answers it, as MLC's and llama.cpp's servers do.",
    )
    stream_interval_ms: int = Field(
        50,
        ge=0,
        le=1000,
        description="Least milliseconds between two events of a streamed reply (0: one event per "
        "token). Tokens that come faster are sent together; each event costs the server and its client "
        "CPU time that generation would otherwise use.",
    )

    @field_validator("model", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        """HEARTH_MODEL=a,b serves two models; a flag given several times arrives as a list already."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if isinstance(value, list) and not [v for v in value if v]:
            raise ValueError("name at least one model")
        return [v for v in value if v] if isinstance(value, list) else value

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _refuse_open_bind(self) -> ServerSettings:
        """Anyone who can reach a non-loopback address could use the model: demand a key, or a choice."""
        if not is_loopback(self.host) and self.api_key is None and not self.insecure:
            raise ValueError(
                f"refusing to listen on {self.host} without an API key: anyone on the network could use "
                "the model. Set --api-key (or HEARTH_API_KEY), or pass --insecure if that is intended"
            )
        return self

    def key(self) -> str | None:
        """The API key in clear, for the one comparison that needs it."""
        return self.api_key.get_secret_value() if self.api_key else None

