"""The Chainlit settings panel, generated from `GenerationSettings` so a range is defined only once."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from chainlit.input_widget import InputWidget, Slider, Switch, TextInput
from chainlit.message import ErrorMessage, Message
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import ValidationError

from llm.settings import GenerationSettings


def settings_widgets(current: GenerationSettings | None = None) -> list[InputWidget]:
    """One widget per panel field of GenerationSettings, starting at the current values."""
    values = (current or GenerationSettings()).model_dump()
    widgets: list[InputWidget] = []
    for name, ui, _default in GenerationSettings.panel_fields():
        common = {"id": name, "label": ui["label"], "description": ui["description"]}
        if ui["widget"] == "slider":
            widgets.append(
                Slider(initial=values[name], min=ui["min"], max=ui["max"], step=ui["step"], **common)
            )
        elif ui["widget"] == "switch":
            widgets.append(Switch(initial=values[name], **common))
        else:
            widgets.append(TextInput(initial=values[name] or "", multiline=True, **common))
    return widgets


def settings_from_panel(values: dict[str, Any]) -> GenerationSettings:
    """Validate what the panel sent. Raises ValueError with a readable message on a bad value."""
    known = {k: v for k, v in values.items() if k in GenerationSettings.model_fields}
    if known.get("system_prompt") == "":
        known["system_prompt"] = None
    try:
        return GenerationSettings.model_validate(known)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid settings: {problems}") from None


def history_before(
    messages: list[Message], current: Message, notices: Container[str] = ()
) -> list[BaseMessage]:
    """The conversation before `current`, as LangChain messages, from Chainlit's own record of the chat:
    editing a message removes the ones after it there, and a stopped reply keeps what was shown.
    Error notices are not part of the conversation (`notices`: ids of those of a resumed thread, which
    Chainlit restores as plain messages)."""
    history: list[BaseMessage] = []
    for message in messages:
        if message.id == current.id:
            break
        if isinstance(message, ErrorMessage) or message.id in notices or not message.content:
            continue
        if message.type == "user_message":
            history.append(HumanMessage(message.content))
        elif message.type == "assistant_message":
            history.append(AIMessage(message.content))
    return history
