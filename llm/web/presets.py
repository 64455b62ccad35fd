"""Presets in the settings panel: pick one and confirm to apply it (its model, template, sampling
settings and system prompt replace the panel's), save the panel under a name, rename or delete the
preset picked. Each user has their own, kept in the history database (llm.web.preset_store); without
history (no login on a network address) the panel has no preset fields.
"""

from __future__ import annotations

from typing import Any

import chainlit as cl
from chainlit.data import get_data_layer
from chainlit.input_widget import InputWidget, Select, Switch, TextInput

from llm.web.data_layer import HearthDataLayer
from llm.web.preset_store import PresetError, PresetStore
from llm.web.ui import choices_from_panel, settings_from_panel

PRESET, SAVE, RENAME, DELETE = "preset", "preset_save", "preset_rename", "preset_delete"
FIELDS = (PRESET, SAVE, RENAME, DELETE)
NONE = "(none)"
"""The picker's "no preset" entry (a select's value cannot be empty)."""
CHOSEN = "hearth_preset"
"""The user session's key for the preset picked last (applying it again only when the pick changes)."""


def store() -> PresetStore | None:
    layer, user = get_data_layer(), cl.context.session.user
    if not isinstance(layer, HearthDataLayer) or user is None:
        return None
    return PresetStore(layer, user.identifier)


def panel_values(values: dict[str, Any]) -> dict[str, Any]:
    """The panel's own values (what a preset keeps), without the preset fields."""
    return {k: v for k, v in values.items() if k not in FIELDS}


async def preset_widgets() -> list[InputWidget]:
    """The panel's preset fields, listing the user's presets (none without a history database)."""
    presets = store()
    if presets is None:
        return []
    names = [p.name for p in await presets.list()]
    chosen = cl.user_session.get(CHOSEN)
    return [
        Select(
            id=PRESET,
            label="Preset",
            items={NONE: NONE, **{name: name for name in names}},
            initial_value=chosen if chosen in names else NONE,
            description="Pick one and confirm: its model, template, settings and system prompt "
            "replace the panel's.",
        ),
        TextInput(
            id=SAVE,
            label="Save as Preset",
            initial="",
            placeholder="a name",
            description="Keep the panel (with your changes) under this name.",
        ),
        TextInput(
            id=RENAME,
            label="Rename Preset To",
            initial="",
            placeholder="a new name",
            description="A new name for the preset picked above.",
        ),
        Switch(
            id=DELETE, label="Delete Preset", initial=False, description="Delete the preset picked above."
        ),
    ]


async def take(values: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Carry out a delete, rename or apply asked in the panel. Returns the panel values to use (a
    preset applied replaces them) and whether the panel must be shown again (its list or values
    changed)."""
    presets = store()
    picked = values.get(PRESET) or NONE
    asked = any(values.get(f) for f in (SAVE, RENAME, DELETE))
    if presets is None or (not asked and picked == (cl.user_session.get(CHOSEN) or NONE)):
        return panel_values(values), False
    try:
        if values.get(DELETE) and picked != NONE:
            await presets.delete(picked)
            cl.user_session.set(CHOSEN, None)
            await _tell(f"Preset “{picked}” deleted.")
        elif (new := (values.get(RENAME) or "").strip()) and picked != NONE:
            new = await presets.rename(picked, new)
            cl.user_session.set(CHOSEN, new)
            await _tell(f"Preset “{picked}” renamed to “{new}”.")
        elif picked != NONE and picked != cl.user_session.get(CHOSEN):
            saved = {p.name: p.values for p in await presets.list()}.get(picked)
            if saved is None:
                raise PresetError(f"there is no preset called {picked!r}")
            cl.user_session.set(CHOSEN, picked)
            await _tell(f"Preset “{picked}” applied.")
            return {**panel_values(values), **saved}, True
        elif picked == NONE:
            cl.user_session.set(CHOSEN, None)
    except PresetError as exc:
        await _tell(f"Presets: {exc}.", "error")
    return panel_values(values), True


async def keep(values: dict[str, Any], panel: dict[str, Any]) -> None:
    """Save `panel` (the values in use) under the name asked in the panel's "Save as Preset", if any."""
    presets, name = store(), (values.get(SAVE) or "").strip()
    if presets is None or not name:
        return
    try:
        settings_from_panel(panel)
        choices_from_panel(panel)
    except ValueError:
        return  # the panel itself was refused, and said why
    try:
        name = await presets.save(name, panel)
    except PresetError as exc:
        await _tell(f"Presets: {exc}.", "error")
        return
    cl.user_session.set(CHOSEN, name)
    await _tell(f"Preset “{name}” saved.")


async def _tell(text: str, kind: str = "success") -> None:
    # A toast, not a chat message: a message would end a new chat's landing and join the thread.
    await cl.context.emitter.send_toast(text, kind)  # type: ignore[arg-type]
