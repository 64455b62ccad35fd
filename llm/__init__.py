"""Hearth's faces over the engine: LangChain classes, settings and chain building."""

from llm.chain import build_chain
from llm.chat_models import ChatHearth
from llm.llms import HearthLLM
from llm.settings import EngineConfig, GenerationSettings

__all__ = ["ChatHearth", "EngineConfig", "GenerationSettings", "HearthLLM", "build_chain"]
