"""ctransformers' Python API (and its LangChain class) on Hearth's shared engine: code written for
ctransformers runs with its import changed, on GGUF models llama.cpp reads today.

    from llm.ctransformers import AutoModelForCausalLM
    llm = AutoModelForCausalLM.from_pretrained("default", model_type="llama", context_length=2048)
    for text in llm("AI is going to", stream=True):
        print(text, end="", flush=True)
"""

from llm.ctransformers.config import AutoConfig, Config
from llm.ctransformers.langchain import CTransformers
from llm.ctransformers.libs import LibraryUnavailable
from llm.ctransformers.model import LLM, AutoModelForCausalLM
from llm.ctransformers.model_types import ModelTypeMismatch

__all__ = [
    "LLM",
    "AutoConfig",
    "AutoModelForCausalLM",
    "CTransformers",
    "Config",
    "LibraryUnavailable",
    "ModelTypeMismatch",
]
