"""The models a picker offers: catalog models usable offline, files in the models folder, and remote
servers from the configuration. Listing loads nothing and touches no network."""

from __future__ import annotations

from dataclasses import dataclass

from llm.settings import EngineConfig
from native.catalog import CATALOG, DEFAULT_MODEL, format_size, obtainable
from native.remote import is_remote
from native.resolve import list_models
from native.torch_load import torch_missing


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model picker."""

    spec: str
    """What `load_engine` takes: a catalog name, a name in models/, a path or a server URL."""
    label: str
    """What the user reads."""


def configured_spec(config: EngineConfig | None = None) -> str:
    """The model the app starts with: `HEARTH_MODEL`, else the catalog's default."""
    return (config or EngineConfig()).model or DEFAULT_MODEL


def remote_models(config: EngineConfig | None = None) -> list[ModelChoice]:
    """`HEARTH_REMOTE_MODELS` (comma-separated `[NAME=]URL[#MODEL_UID]`) as picker entries."""
    choices = []
    for item in (config or EngineConfig()).remote_models.split(","):
        name, sep, url = item.strip().partition("=")
        if not sep:
            name, url = "", name
        if not is_remote(url):
            if item.strip():
                raise ValueError(f"HEARTH_REMOTE_MODELS: {item.strip()!r} is not [NAME=]http(s)://URL")
            continue
        choices.append(ModelChoice(url, f"{name or url} (remote)"))
    return choices


def model_choices(config: EngineConfig | None = None) -> list[ModelChoice]:
    """Every model Hearth can run without downloading anything, the configured one first; where the
    torch backend is installed, each local model again as `torch:NAME`."""
    config = config or EngineConfig()
    choices = []
    for entry in list_models():
        if entry.source == "catalog":
            catalog = CATALOG[entry.name]
            if not obtainable(catalog):
                continue
            note = "" if entry.path else f", assembled on first use ({format_size(entry.size)})"
            choices.append(ModelChoice(entry.name, f"{entry.name}{note}"))
        else:
            choices.append(ModelChoice(entry.name, f"{entry.name} (models/, {format_size(entry.size)})"))
    if not torch_missing():
        # The same files on PyTorch (transformers dequantizes them): `load_engine` reads the prefix.
        choices += [
            ModelChoice(f"torch:{c.spec}", f"{c.spec} on torch (transformers)") for c in list(choices)
        ]
    choices += remote_models(config)
    configured = configured_spec(config)
    if configured not in {c.spec for c in choices}:
        choices.insert(0, ModelChoice(configured, f"{configured} (HEARTH_MODEL)"))
    else:
        choices.sort(key=lambda c: c.spec != configured)
    return choices


def label_of(spec: str, config: EngineConfig | None = None) -> str:
    """A short name for `spec` in messages: the remote entry's name, else the spec itself."""
    for choice in remote_models(config):
        if choice.spec == spec:
            return choice.label.removesuffix(" (remote)")
    return spec
