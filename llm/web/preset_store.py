"""Each user's presets of the settings panel (system prompt, sampling settings, template, model), kept by
name in the history database beside the threads (`presets` in llm.web.tables), on SQLite or PostgreSQL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from llm.web.data_layer import HearthDataLayer
from llm.web.tables import presets

MAX_NAME = 60


class PresetError(ValueError):
    """A preset name that cannot be used (empty, too long, taken, unknown); the message says which."""


@dataclass(frozen=True)
class Preset:
    name: str
    values: dict[str, Any]
    """The panel's values (model, chat_template, every generation setting, show_prompt)."""


class PresetStore:
    """One user's presets, in the history database of `layer`."""

    def __init__(self, layer: HearthDataLayer, user: str) -> None:
        self.layer, self.user = layer, user

    async def list(self) -> list[Preset]:
        """The user's presets, by name."""
        await self.layer.ensure_schema()
        query = select(presets.c.name, presets.c["values"]).where(presets.c.userIdentifier == self.user)
        async with self.layer.engine.connect() as connection:
            rows = (await connection.execute(query.order_by(presets.c.name))).all()
        return [Preset(name, values) for name, values in rows]

    async def save(self, name: str, values: dict[str, Any]) -> str:
        """Keep `values` as the preset `name` (replacing a preset of that name); returns the name used."""
        name = checked_name(name)
        await self.layer.ensure_schema()
        async with self.layer.engine.begin() as connection:
            changed = await connection.execute(
                update(presets).where(self._named(name)).values({"values": values})
            )
            if not changed.rowcount:
                await connection.execute(
                    presets.insert().values(
                        {
                            "id": str(uuid.uuid4()),
                            "userIdentifier": self.user,
                            "name": name,
                            "values": values,
                            "createdAt": datetime.now(UTC).isoformat(),
                        }
                    )
                )
        return name

    async def rename(self, old: str, new: str) -> str:
        """Rename the preset `old` to `new`; returns the new name. Raises PresetError when `old` does not
        exist or `new` is taken."""
        new = checked_name(new)
        await self.layer.ensure_schema()
        try:
            async with self.layer.engine.begin() as connection:
                changed = await connection.execute(update(presets).where(self._named(old)).values(name=new))
        except IntegrityError:
            raise PresetError(f"there is already a preset called {new!r}") from None
        if not changed.rowcount:
            raise PresetError(f"there is no preset called {old!r}")
        return new

    async def delete(self, name: str) -> None:
        """Forget the preset `name` (nothing happens when there is none)."""
        await self.layer.ensure_schema()
        async with self.layer.engine.begin() as connection:
            await connection.execute(delete(presets).where(self._named(name)))

    def _named(self, name: str):
        return (presets.c.userIdentifier == self.user) & (presets.c.name == name)


def checked_name(name: str) -> str:
    """`name` without surrounding spaces. Raises PresetError when it is empty or too long."""
    name = " ".join(name.split())
    if not name:
        raise PresetError("a preset needs a name")
    if len(name) > MAX_NAME:
        raise PresetError(f"a preset's name is at most {MAX_NAME} characters")
    return name
