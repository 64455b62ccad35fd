"""The inference core: model resolution, GGUF inspection, hardware, and the llama.cpp engine.

The only room that touches llama.cpp. Importing it loads llama.cpp's shared library, never a model.
"""

from native import errors
from native.engine import (
    Engine,
    close_engines,
    forget_session,
    load_engine,
    loaded_engines,
    model_loads,
    save_sessions,
    with_backend,
)
from native.protocol import EngineProtocol
from native.remote import RemoteEngine
from native.sampling import SamplingParams
from native.stream import Completion, Stream, Timings, Usage

__all__ = [
    "Completion",
    "Engine",
    "EngineProtocol",
    "RemoteEngine",
    "SamplingParams",
    "Stream",
    "Timings",
    "Usage",
    "close_engines",
    "errors",
    "forget_session",
    "load_engine",
    "loaded_engines",
    "model_loads",
    "save_sessions",
    "with_backend",
]
