"""The Chainlit settings panel, generated from `GenerationSettings` so a range is defined only once,
plus the model picker, the chat template and the "show prompt" switch."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from chainlit.input_widget import InputWidget, Select, Slider, Switch, TextInput
from chainlit.message import ErrorMessage, Message
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import ValidationError

import prompts
from llm.settings import GenerationSettings, problems, reply_limit
from llm.web.model_choices import ModelChoice

AUTO_TEMPLATE = "auto"
NOTICE = {"hearth_notice": True}
"""Metadata of the app's own messages (loading, ready, waiting...): never part of the conversation."""


@dataclass(frozen=True)
class PanelChoices:
    """What the panel holds besides generation settings."""

    model: str | None
    chat_template: str | None
    """A built-in template name, or None for the model's automatic choice."""
    show_prompt: bool


def settings_widgets(
    current: GenerationSettings | None = None, n_ctx: int | None = None
) -> list[InputWidget]:
    """One widget per panel field of GenerationSettings, starting at the current values. A slider
    without a fixed end (max new tokens) ends where the model's context of `n_ctx` tokens does."""
    values = (current or GenerationSettings()).model_dump()
    widgets: list[InputWidget] = []
    for name, ui, _default in GenerationSettings.panel_fields():
        common = {"id": name, "label": ui["label"], "description": ui["description"]}
        if ui["widget"] == "slider":
            end = ui["max"] if ui["max"] is not None else reply_limit(n_ctx)
            initial = min(values[name], end)  # a value set for a model with a longer context
            widgets.append(Slider(initial=initial, min=ui["min"], max=end, step=ui["step"], **common))
        elif ui["widget"] == "switch":
            widgets.append(Switch(initial=values[name], **common))
        else:
            widgets.append(TextInput(initial=values[name] or "", multiline=True, **common))
    return widgets


def panel_widgets(
    settings: GenerationSettings,
    models: list[ModelChoice],
    model: str | None,
    auto_template: str,
    chat_template: str | None,
    show_prompt: bool,
    n_ctx: int | None = None,
) -> list[InputWidget]:
    """The whole panel: model, chat template, the generation settings, then "show prompt". `n_ctx`:
    the loaded model's context (one session's), where the max-new-tokens slider ends."""
    auto_label = "model's own" if auto_template == "gguf" else auto_template
    templates = {f"auto ({auto_label})": AUTO_TEMPLATE, **{t: t for t in prompts.list_templates()}}
    return [
        Select(
            id="model",
            label="Model",
            items={c.label: c.spec for c in models},
            initial_value=model,
            description="Loaded once for every chat; chats on other models keep theirs.",
        ),
        Select(
            id="chat_template",
            label="Chat Template",
            items=templates,
            initial_value=chat_template or AUTO_TEMPLATE,
            description="How the conversation is written for the model; auto picks it from the model.",
        ),
        *settings_widgets(settings, n_ctx),
        Switch(
            id="show_prompt",
            label="Show Prompt",
            initial=show_prompt,
            description="Show the exact prompt and stop strings of each reply.",
        ),
    ]


def settings_from_panel(values: dict[str, Any]) -> GenerationSettings:
    """Validate what the panel sent. Raises ValueError with a readable message on a bad value."""
    known = {k: v for k, v in values.items() if k in GenerationSettings.model_fields}
    if known.get("system_prompt") == "":
        known["system_prompt"] = None
    try:
        return GenerationSettings.model_validate(known)
    except ValidationError as exc:
        raise ValueError(f"invalid settings: {problems(exc)}") from None


def choices_from_panel(values: dict[str, Any]) -> PanelChoices:
    """The model, template and show-prompt values of the panel. Raises ValueError on an unknown template."""
    template = values.get("chat_template") or AUTO_TEMPLATE
    if template != AUTO_TEMPLATE and template not in prompts.list_templates():
        raise ValueError(f"unknown chat template {template!r}; choose one of {prompts.list_templates()}")
    return PanelChoices(
        model=values.get("model") or None,
        chat_template=None if template == AUTO_TEMPLATE else template,
        show_prompt=bool(values.get("show_prompt", False)),
    )


def history_before(
    messages: list[Message],
    current: Message | None,
    starts_at: str | None = None,
    notices: Container[str] = (),
) -> list[BaseMessage]:
    """The conversation before `current` (None: all of it), as LangChain messages, from Chainlit's
    own record of the chat: editing a message removes the ones after it there, and a stopped reply
    keeps what was shown. Error notices and the app's own notices are not part of the conversation
    (`notices`: ids of those of a resumed thread, which Chainlit restores as plain messages), nor is
    anything before the message `starts_at` (after "start over" or "trim")."""
    history: list[BaseMessage] = []
    for message in messages:
        if current is not None and message.id == current.id:
            break
        if message.id == starts_at:
            history.clear()
        if (
            isinstance(message, ErrorMessage)
            or message.id in notices
            or not message.content
            or (message.metadata or {}).get("hearth_notice")
        ):
            continue
        if message.type == "user_message":
            history.append(HumanMessage(message.content))
        elif message.type == "assistant_message":
            history.append(AIMessage(message.content))
    return history
