"""The OpenAI-compatible REST server (`python -m llm.rest`); see llm/rest/app.py."""

from llm.rest.app import create_app
from llm.rest.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
