"""LangChain's own standard test suites for chat models, run against ChatHearth on the default model."""

from __future__ import annotations

from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from llm import ChatHearth


class _Capabilities:
    @property
    def chat_model_class(self) -> type[ChatHearth]:
        return ChatHearth

    @property
    def chat_model_params(self) -> dict:
        return {"model": "default", "temperature": 0.0, "max_new_tokens": 64}

    # Tool calls and structured output are constrained by a llama.cpp grammar (llm/tools/langchain.py).
    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True


class TestChatHearthUnit(_Capabilities, ChatModelUnitTests):
    pass


class TestChatHearthIntegration(_Capabilities, ChatModelIntegrationTests):
    pass
