"""`python -m llm.chat`: chat with a model in the terminal.

    python -m llm.chat --model default --system-prompt "Be brief." --max-new-tokens 256

Replies stream as they are generated. The conversation stays in the engine's KV cache, so each turn
computes only its new tokens. Ctrl-C stops the reply being written (the chat goes on), Ctrl-D quits.
The generation flags are `GenerationSettings`' fields, with its ranges and defaults.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from llm.logs import configure_logging
from llm.nano import ChatHistory, NanoLLM, StreamingResponse
from llm.settings import EngineConfig, GenerationFields, GenerationSettings
from native import with_backend
from native.errors import HearthError

PROMPT = ">> "
HELP = """commands:
  /reset   forget the conversation (the system prompt stays)
  /stats   tokens and speed of the last reply, and the size of the conversation
  /help    this list
  /exit    quit (Ctrl-D too); Ctrl-C stops a reply"""

# Chat-level fields with their own flags (or none: a terminal always streams).
_NOT_SAMPLING = {"streaming", "system_prompt"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m llm.chat", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model path, folder, name or catalog name")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, metal or vulkan")
    parser.add_argument("--backend", default=None, help=EngineConfig.model_fields["backend"].description)
    parser.add_argument("--chat-template", default=None, help="a built-in template name or a JSON file")
    parser.add_argument("--system-prompt", default=None, help="instructions placed before the chat")
    for name, info in GenerationFields.model_fields.items():
        if name in _NOT_SAMPLING:
            continue
        flag = "--" + name.replace("_", "-")
        if name == "stop":
            parser.add_argument(flag, action="append", default=None, help=f"{info.description} (repeatable)")
        else:
            parser.add_argument(flag, type=_scalar_type(info.annotation), default=None, help=info.description)
    return parser.parse_args(argv)


def _scalar_type(annotation: Any) -> type:
    """int, float or str from a field's annotation (`int | None` is int)."""
    options = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return options[0] if options[0] in (int, float) else str


def settings_from(args: argparse.Namespace) -> GenerationSettings:
    given = {
        name: getattr(args, name)
        for name in GenerationFields.model_fields
        if name not in _NOT_SAMPLING and getattr(args, name) is not None
    }
    return GenerationSettings.model_validate(given)


class TerminalChat:
    """The read-reply loop over a ChatHistory."""

    def __init__(self, model: NanoLLM, history: ChatHistory, settings: GenerationSettings) -> None:
        self.model, self.history, self.settings = model, history, settings
        self.last: StreamingResponse | None = None

    def run(self) -> int:
        name, template = self.model.config.name, self.history.template.name
        print(f"Chatting with {name} (chat template {template}). /help lists the commands; Ctrl-D quits.")
        while True:
            try:
                line = input(PROMPT).strip()
            except EOFError:  # Ctrl-D
                print()
                return 0
            except KeyboardInterrupt:
                print("\n[Ctrl-D or /exit quits]")
                continue
            if not line:
                continue
            if line.startswith("/"):
                if self.command(line) == "exit":
                    return 0
            else:
                self.reply(line)

    def command(self, line: str) -> str | None:
        name = line.split()[0].lower()
        if name in ("/exit", "/quit"):
            return "exit"
        if name == "/reset":
            self.history.reset()
            self.last = None
            print("[conversation cleared]")
        elif name == "/stats":
            print(self.stats())
        elif name == "/help":
            print(HELP)
        else:
            print(f"[unknown command {name}; /help lists the commands]")
        return None

    def reply(self, text: str) -> None:
        """Stream the reply to `text`; Ctrl-C ends it early, and what was shown stays in the chat."""
        self.history.append("user", text)
        reply: StreamingResponse | None = None
        try:
            tokens, _ = self.history.embed_chat()
            reply = self.model.generate(
                tokens,
                kv_cache=self.history.kv_cache,
                stop_tokens=[*self.history.template.stop, *self.settings.stop],
                do_sample=True,  # the temperature decides: 0 is greedy
                **self.settings.model_dump(exclude={*_NOT_SAMPLING, "stop"}),
            )
            assert isinstance(reply, StreamingResponse)
            for piece in reply:
                print(piece, end="", flush=True)
            print()
        except KeyboardInterrupt:
            print(" [stopped]")
        except (HearthError, ValueError) as exc:  # too long for the context, engine busy or failed
            print(f"\n[error: {exc}]")
        if reply is None or not reply.text:
            self.history.pop(1)  # nothing was said: the question goes too, so the turns stay paired
            return
        self.history.append("bot", reply.text)
        self.history.kv_cache = reply.kv_cache
        self.last = reply

    def stats(self) -> str:
        n = len(self.history)
        lines = [f"conversation: {n} message{'' if n == 1 else 's'}, {self.history.num_tokens} tokens"]
        if self.last is not None and self.last.completion is not None:
            usage, timings = self.last.completion.usage, self.last.completion.timings
            lines += [
                f"last reply: {usage.completion_tokens} tokens ({self.last.completion.finish_reason}); "
                f"prompt {usage.prompt_tokens} tokens, {usage.cached_tokens} of them cached",
                f"time to first token {timings.time_to_first_token:.3f} s, prefill "
                f"{timings.prefill_tokens_per_s:.1f} tok/s, decode {timings.decode_tokens_per_s:.1f} tok/s",
            ]
        return "\n".join(lines)


def answer_ctrl_c() -> None:
    """Make Ctrl-C raise KeyboardInterrupt even where the chat was started with SIGINT ignored: a
    shell without job control ignores it in the commands it starts with `&`, exec keeps that, and
    Python then leaves it ignored, so Ctrl-C at the chat's own terminal would do nothing."""
    if sys.stdin.isatty() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    answer_ctrl_c()
    configure_logging(os.environ.get("HEARTH_LOG_LEVEL") or "warning")  # keep the chat readable
    try:
        settings = settings_from(args)
        model = NanoLLM.from_pretrained(with_backend(args.model, args.backend), device=args.device)
        history = ChatHistory(
            model, chat_template=args.chat_template, system_prompt=args.system_prompt, prefill_next_turn=True
        )
    except (ValidationError, HearthError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return TerminalChat(model, history, settings).run()


if __name__ == "__main__":
    sys.exit(main())
