"""NanoLLM's chat API on Hearth: models, chat histories with a KV cache, and functions the model calls.

Code written for `nano_llm` runs with its import line changed:

    from llm.nano import NanoLLM, ChatHistory, BotFunctions, bot_function
"""

from llm.nano.functions import BotFunctions, bot_function
from llm.nano.history import ChatHistory, ChatMessage
from llm.nano.model import NanoLLM
from llm.nano.stream import KVCache, StreamingResponse

__all__ = [
    "BotFunctions",
    "ChatHistory",
    "ChatMessage",
    "KVCache",
    "NanoLLM",
    "StreamingResponse",
    "bot_function",
]
