"""Functions a model may call: described from their signatures, found in the model's output, parsed
without `eval()`, validated with pydantic, and run. Shared by NanoLLM's `bot_function` and by
ChatHearth's `bind_tools`."""

from llm.tools.calls import Call, Found, Outcome, find_call, parse_call, run_call
from llm.tools.spec import CallError, Function

__all__ = ["Call", "CallError", "Found", "Function", "Outcome", "find_call", "parse_call", "run_call"]
