"""Hearth's own files in the browser: its CSS and JS, its logos, and its custom elements.

Chainlit serves such files from a `public/` folder beside the app, which Hearth's layout does not
have: they live in `llm/web/assets/` and these routes serve them on Chainlit's own server, at the
URLs Chainlit's UI asks for (`/logo?theme=...`, `/favicon`, `/public/elements/NAME.jsx`) or that
`.chainlit/config.toml` names (`/hearth/hearth.css`, `/hearth/hearth.js`).
"""

from __future__ import annotations

import re
from pathlib import Path

from chainlit.config import config
from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse

ASSETS = Path(__file__).resolve().parent / "assets"
MARK = "/hearth/mark-light.svg"
"""Hearth's mark (the flame), for the landing; the CSS swaps in the dark one under the dark theme."""

_MEDIA = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml", ".jsx": "text/plain"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a file name: no folder, no "..", nothing hidden


def _serve(folder: Path, name: str) -> FileResponse:
    path = folder / name
    if not _NAME.fullmatch(name) or path.suffix not in _MEDIA or not path.is_file():
        raise HTTPException(status_code=404, detail="not found")
    # no-cache: the browser asks again (cheaply, by ETag), so a changed asset shows without a hard reload
    return FileResponse(path, media_type=_MEDIA[path.suffix], headers={"Cache-Control": "no-cache"})


def _router() -> APIRouter:
    router = APIRouter(prefix=config.run.root_path)

    @router.get("/hearth/{name}")
    async def hearth_asset(name: str) -> FileResponse:
        return _serve(ASSETS, name)

    @router.get("/public/elements/{name}")
    async def custom_element(name: str) -> FileResponse:
        return _serve(ASSETS / "elements", name)

    @router.get("/logo")
    async def logo(theme: str = Query("light")) -> FileResponse:
        return _serve(ASSETS, f"logo-{'dark' if theme == 'dark' else 'light'}.svg")

    @router.get("/favicon")
    async def favicon() -> FileResponse:
        return _serve(ASSETS, "mark-light.svg")

    return router


def mount(app: FastAPI) -> None:
    """Serve Hearth's assets on Chainlit's app. Its routes end in a catch-all that answers every
    unknown path with the UI's page, so these go in front of them; once per app (a reload of
    app.py by `chainlit run -w` calls this again)."""
    if getattr(app.state, "hearth_assets", False):
        return
    app.router.routes[0:0] = _router().routes
    app.state.hearth_assets = True
