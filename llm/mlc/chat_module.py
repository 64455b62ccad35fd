"""`ChatModule`: MLC-Chat's Python API over Hearth's shared engine.

    from llm.mlc import ChatModule
    from llm.mlc.callback import StreamToStdout

    cm = ChatModule(model="default")
    cm.generate("What is the meaning of life?", progress_callback=StreamToStdout(callback_interval=2))
    print(cm.stats())

The model is loaded through `native.load_engine`, so a ChatModule, a LangChain chat model and a Chainlit
chat naming the same model share one copy of the weights. Each ChatModule is one engine session: its
conversation stays in the KV cache and every turn computes only the tokens it adds.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import prompts
from llm import keywords
from llm._base import configured_engine
from llm.mlc.config import ChatConfig, GenerationConfig, generation_settings, load_config_file, merge
from llm.mlc.conversation import Conversation
from llm.mlc.stats import RuntimeStats
from llm.nano.model import require_local
from llm.settings import GenerationSettings
from native import Engine, Stream
from native.resolve import resolve_model

ProgressCallback = Callable[..., Any]


class ChatModule:
    """A chat with one model, configured like MLC-Chat (see `ChatConfig` and `ConvConfig`).

    `model` is a path to a .gguf file, a folder holding one, a name in models/ or a catalog name.
    A `hearth-chat-config.json` beside the model (in its folder) is read first, then `chat_config`
    overrides the fields it sets.
    """

    @keywords.checked
    def __init__(
        self,
        model: str,
        device: str = "auto",
        chat_config: ChatConfig | None = None,
        model_lib_path: str | None = None,
        lib_path: str | None = None,
        *,
        prefill_next_turn: bool = False,
        user: str | None = None,
    ) -> None:
        """`lib_path` is the older MLC name of `model_lib_path`. With `prefill_next_turn` (Hearth's
        own), the engine computes the template's turn separator into the cache while the chat sits
        idle after a reply, so the next message prefills fewer tokens (`Engine.submit`'s
        `followed_by`). `user` (Hearth's own): whose chat this is; cached prefixes are shared only
        among one user's chats."""
        require_local(model)
        self.model_path = resolve_model(model)
        self.config_folder = _config_folder(model, self.model_path)
        self.chat_config = merge(load_config_file(self.config_folder), chat_config)
        generation_settings(self.chat_config)  # refuse out-of-range values now, not at the first reply
        check_model_lib(model_lib_path or lib_path or self.chat_config.model_lib)
        self.engine: Engine = configured_engine(model, device, self.chat_config.context_window_size)
        self.session = f"mlc-{uuid.uuid4().hex}"
        self.prefill_next_turn = prefill_next_turn
        self.user = user
        self.conversation = Conversation(self.engine, self.chat_config)
        self._stats = RuntimeStats()

    # -- the seed's API -----------------------------------------------------------------------------

    @keywords.checked
    def generate(
        self,
        prompt: str | Sequence[Any],
        generation_config: GenerationConfig | None = None,
        progress_callback: ProgressCallback | None = None,
    ) -> str | list[str]:
        """The reply to `prompt` (a user message, or a list of chat messages that replaces the
        conversation). With `generation_config.n > 1`, a list of that many replies; the first one is
        streamed to `progress_callback` and kept in the conversation."""
        settings = generation_settings(self.chat_config, generation_config)
        n = (generation_config.n if generation_config else None) or 1
        tokens, messages = self.conversation.tokens(prompt)
        streams = self._submit(tokens, settings, n)
        try:
            reply = _consume(streams[0], progress_callback)
            replies = [reply] + ["".join(stream) for stream in streams[1:]]
        finally:
            for stream in streams:
                stream.cancel()  # a no-op for finished streams; stops the rest on Ctrl-C or an error
        for stream in streams:
            if stream.completion is not None:
                self._stats.add(stream.completion)
        self.conversation.remember(messages, reply)
        return replies if n > 1 else reply

    @keywords.checked
    def reset_chat(self, chat_config: ChatConfig | None = None) -> None:
        """Forget the conversation and the statistics. With `chat_config`, the configuration is rebuilt
        as at creation: `hearth-chat-config.json`, then `chat_config`. The model stays loaded."""
        if chat_config is not None:
            config = merge(load_config_file(self.config_folder), chat_config)
            generation_settings(config)
            self.conversation = Conversation(self.engine, config)
            self.chat_config = config
        self.conversation.reset()
        self._stats = RuntimeStats()

    @keywords.checked
    def stats(self, verbose: bool = False) -> str | dict[str, Any]:
        """ "prefill: X tok/s, decode: Y tok/s" since the last reset; `verbose` gives a dict with token
        counts (computed and cached), times and time to first token."""
        return self._stats.verbose() if verbose else self._stats.text()

    @keywords.checked
    def benchmark_generate(self, prompt: str, generate_length: int) -> str:
        """Generate up to `generate_length` tokens from the raw text `prompt` (no template, no system
        prompt, no stop strings) after resetting the chat and the statistics; read `stats()` after.
        It ends early only if the model emits its end-of-generation token: forbidding that token
        would take a grammar, which slows decoding and would distort the measurement."""
        if generate_length < 1:
            raise ValueError(f"generate_length must be at least 1, got {generate_length}")
        self.reset_chat()
        base = generation_settings(self.chat_config).model_dump()
        settings = GenerationSettings.model_validate({**base, "max_new_tokens": generate_length, "stop": []})
        stream = self.engine.submit(
            self.conversation.encode(prompt), settings.sampling(), session=None, user=self.user
        )
        text = _consume(stream, None)
        self._stats.add(stream.completion)  # type: ignore[arg-type]
        return text

    # -- details ------------------------------------------------------------------------------------

    @property
    def history(self) -> list[dict[str, str]]:
        """The conversation so far as {"role", "content"} messages (empty with the LM template)."""
        return list(self.conversation.history)

    def _submit(self, tokens: list[int], settings: GenerationSettings, n: int) -> list[Stream]:
        """The first reply runs in this chat's session (its KV cache); extra replies are sampled
        alongside without a session, each with its own seed so that they differ."""
        sampling = settings.sampling(self.conversation.stop)
        template = self.conversation.template
        follow = prompts.turn_separator(template) if self.prefill_next_turn and template is not None else None
        streams = [
            self.engine.submit(tokens, sampling, session=self.session, followed_by=follow, user=self.user)
        ]
        for i in range(1, n):
            streams.append(self.engine.submit(tokens, sampling.for_choice(i), user=self.user))
        return streams


def _consume(stream: Stream, callback: ProgressCallback | None) -> str:
    """The reply's text, reported to `callback` as MLC does: the whole message so far every
    `callback_interval` tokens and at the end, then `stopped=True`."""
    interval = max(1, int(getattr(callback, "callback_interval", 1)))
    text, reported = "", ""
    for i, delta in enumerate(stream):
        text += delta
        if callback is not None and i % interval == 0:
            callback(text)
            reported = text
    if callback is not None:
        if text != reported:
            callback(text)
        callback(stopped=True)
    return text


def _config_folder(model: str, resolved: Path) -> Path:
    """Where `hearth-chat-config.json` is looked for: the folder the user named, the folder of the
    file they named (symlinks not followed: a link farm can hold one config per link), or the folder
    of the resolved model file."""
    given = Path(model).expanduser()
    if given.is_dir():
        return given
    if given.is_file():
        return given.parent
    return resolved.parent


def check_model_lib(path: str | None) -> None:
    """`model_lib_path` selects the llama.cpp shared library. One process holds one: the library in
    LLAMA_CPP_LIB_PATH when Python started, else llama-cpp-python's own. Naming another is refused."""
    if path is None:
        return
    lib = Path(path).expanduser()
    if not lib.is_file():
        raise FileNotFoundError(f"model_lib_path {path} is not a file: give the path of a libllama build")
    loaded = os.environ.get("LLAMA_CPP_LIB_PATH")
    if loaded is None or lib.resolve().parent != Path(loaded).expanduser().resolve():
        raise ValueError(
            f"model_lib_path {path}: this process already runs llama.cpp from "
            f"{loaded or 'llama-cpp-python'}, and one process holds one library; start Python with "
            f"LLAMA_CPP_LIB_PATH={lib.resolve().parent} to run this one"
        )
