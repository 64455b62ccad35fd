"""Shared fixtures: the real default model, loaded once for the whole run."""

from __future__ import annotations

import pytest

from native import load_engine


@pytest.fixture(scope="session")
def engine():
    """The shared engine of the default model (SmolLM2-135M-Instruct Q4_1)."""
    return load_engine("default")


@pytest.fixture(scope="session")
def chat_prompt():
    """A chat-ml prompt the default model answers at length."""
    return "<|im_start|>user\nWrite a long story about a dragon.<|im_end|>\n<|im_start|>assistant\n"
