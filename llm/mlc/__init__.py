"""MLC-Chat's Python API on Hearth: `ChatModule` and its configuration objects.

Code written for `mlc_chat` runs with its import line changed:

    from llm.mlc import ChatModule, ChatConfig, ConvConfig, GenerationConfig
    from llm.mlc.callback import StreamToStdout
"""

from llm.mlc import callback
from llm.mlc.chat_module import ChatModule
from llm.mlc.config import ChatConfig, ConvConfig, GenerationConfig
from llm.mlc.conversation import LM

__all__ = ["LM", "ChatConfig", "ChatModule", "ConvConfig", "GenerationConfig", "callback"]
