"""`settle()`: a long-running face (the browser app, the REST server) calls it once it has started.

CPython's full collection walks every object the process holds, with the GIL held: in a process that
has imported Chainlit, LangChain and FastAPI that is 40-110 ms on this project's 2-core machines, a
stall every chat on the event loop sees. Objects alive after start-up (modules, the engine, the
settings) live until the process ends, so we move them out of the collector's sight: a full
collection then walks only what came after.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what start-up left unreachable, then freeze the rest (`gc.freeze`)."""
    gc.collect()
    gc.freeze()
