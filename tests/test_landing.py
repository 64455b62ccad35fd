"""The first screen's description of the model (llm.web.landing) and the routes that serve Hearth's
own files on Chainlit's server (llm.web.assets)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from llm.web import assets
from llm.web.landing import CHAT_STARTERS, TEXT_STARTERS, summarize
from native import model_loads
from native.hardware import default_threads


def test_the_default_model_is_described_without_loading_it():
    loads = model_loads()
    summary = summarize("default")
    assert model_loads() == loads
    assert summary.name == "SmolLM2-135M-Instruct.Q4_1"
    assert summary.follows_instructions
    threads = default_threads()
    assert (
        summary.line()
        == f"SmolLM2-135M-Instruct.Q4_1 · 93.8 MiB · context 4096 tokens · cpu, {threads} threads"
    )


def test_a_loaded_model_is_described_as_it_runs(engine):
    summary = summarize("default")
    assert (summary.context, summary.where) == (engine.n_ctx, f"cpu, {engine.n_threads} threads")


def test_a_base_model_gets_text_to_continue_and_a_chat_model_questions():
    assert not summarize("gemma-3-270m").follows_instructions  # no chat template in its file
    assert all(s.message.endswith("?") or s.message.endswith(".") for s in CHAT_STARTERS)
    assert not any(s.message.endswith("?") for s in TEXT_STARTERS)


def test_assets_are_served_before_chainlits_catch_all_and_only_from_their_folder():
    app = FastAPI()

    @app.get("/{full_path:path}")
    async def catch_all(full_path: str) -> dict:  # what Chainlit's last route does: the UI's page
        return {"page": full_path}

    assets.mount(app)
    assets.mount(app)  # chainlit run -w reloads app.py: still one set of routes
    client = TestClient(app)
    css = client.get("/hearth/hearth.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ".hearth-stats-line" in css.text
    assert "stop-button" in client.get("/hearth/hearth.js").text
    assert "export default function HearthStats" in client.get("/public/elements/HearthStats.jsx").text
    assert "#f8ede3" in client.get("/logo", params={"theme": "dark"}).text  # the light wordmark on dark
    assert "#3b2314" in client.get("/logo", params={"theme": "light"}).text
    assert client.get("/favicon").headers["content-type"] == "image/svg+xml"
    for outside in ("/hearth/.hidden.css", "/hearth/assets.py", "/hearth/nope.css", "/public/elements/x.py"):
        assert client.get(outside).status_code == 404, outside
    # A name that climbs out is no name of theirs: it reaches the UI's page, never a file.
    climbing = client.get("/hearth/..%2F..%2Fapp.py")
    assert climbing.json() == {"page": "hearth/../../app.py"}
    assert client.get("/thread/abc").json() == {"page": "thread/abc"}  # everything else still reaches it
    assert len(app.router.routes) == len(
        {(r.path, tuple(getattr(r, "methods", ()))) for r in app.router.routes}
    )
