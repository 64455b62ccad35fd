"""Every engine implements the engine protocol (native/protocol.py): the faces call it without probing.
A new engine class goes into ENGINES."""

from __future__ import annotations

import inspect

import pytest
from test_functions import ScriptedEngine

from native import Engine, EngineProtocol, RemoteEngine, load_engine
from native.torch_load import torch_missing

ENGINES = [Engine, RemoteEngine, ScriptedEngine]
if not torch_missing():  # the optional backend (make install TORCH=1)
    from native.torch_engine import TorchEngine

    ENGINES.append(TorchEngine)
MEMBERS = [m for m in dir(EngineProtocol) if not m.startswith("_")] + ["renders_chat"]


@pytest.mark.parametrize("engine_class", ENGINES, ids=lambda c: c.__name__)
def test_an_engine_class_has_every_member_of_the_protocol(engine_class):
    for member in MEMBERS:
        assert hasattr(engine_class, member) or member in getattr(engine_class, "__annotations__", {}), (
            f"{engine_class.__name__} lacks {member}"
        )
    assert isinstance(engine_class.renders_chat, bool)


@pytest.mark.parametrize("engine_class", ENGINES, ids=lambda c: c.__name__)
def test_an_engine_takes_every_call_the_faces_make(engine_class):
    submit = inspect.signature(engine_class.submit)
    # The calls llm/ makes, as they are written there.
    submit.bind(None, "prompt")
    submit.bind(None, [1, 2, 3], None, "session", followed_by="<sep>", user="alice")
    submit.bind(None, "prompt", sampling=None, session=None, followed_by=None, user=None)
    inspect.signature(engine_class.forget_session).bind(None, "session", "alice")
    inspect.signature(engine_class.forget_session).bind(None, "session", user=None)
    inspect.signature(engine_class.save_sessions).bind(None)


def test_the_loaded_engine_is_an_engine_protocol(engine):
    assert isinstance(load_engine("default"), EngineProtocol)
    assert engine.renders_chat is False and RemoteEngine.renders_chat is True
