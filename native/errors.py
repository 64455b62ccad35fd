"""Every failure the core can report, each naming what went wrong and how to fix it.

Callers catch `HearthError` for "anything the core refused"; the subclasses also inherit the builtin
exception a Python user would reach for first (FileNotFoundError, ValueError, RuntimeError).
"""

from __future__ import annotations


class HearthError(Exception):
    """Base class of every error raised by `native`."""


class ModelNotFound(HearthError, FileNotFoundError):
    """No model matches the given path, folder, name or catalog entry."""


class UnsafeModelName(HearthError, ValueError):
    """A model name tried to reach outside the models folder (`../`, absolute path, symlink out)."""


class AmbiguousModel(HearthError, ValueError):
    """A folder holds several GGUF files and nothing says which one to load; name the file instead."""


class InvalidModelFile(HearthError, ValueError):
    """The file exists but is not a model llama.cpp can load."""


class EmptyModelFile(InvalidModelFile):
    """The file has zero bytes."""


class NotAGGUFFile(InvalidModelFile):
    """The file does not start with the GGUF magic."""


class TruncatedModelFile(InvalidModelFile):
    """The file is shorter than its own header says (an interrupted download or copy)."""


class UnsupportedArchitecture(InvalidModelFile):
    """The GGUF declares an architecture this llama.cpp build cannot run."""


class ModelLoadFailed(HearthError, RuntimeError):
    """llama.cpp refused a file that passed validation."""


class InvalidDevice(HearthError, ValueError):
    """A device string is not one of the accepted forms (auto, cpu, cuda, cuda:N, metal, vulkan)."""


class DeviceUnavailable(HearthError, RuntimeError):
    """The requested device is not present on this machine or not compiled into this build."""


class BackendUnavailable(HearthError, RuntimeError):
    """The requested backend (`torch`) is not installed, or is not one Hearth knows; the message names
    the install command."""


class UnsupportedSampling(HearthError, ValueError):
    """A sampling option the chosen backend cannot honour (the torch backend has no grammar sampler
    and no per-request seed); the message names the backend that has it."""


class ContextOverflow(HearthError, ValueError):
    """The prompt (plus the room reserved for the reply) does not fit the context window."""

    def __init__(self, prompt_tokens: int, context_size: int, max_new_tokens: int = 0) -> None:
        self.prompt_tokens = prompt_tokens
        self.context_size = context_size
        self.max_new_tokens = max_new_tokens
        super().__init__(
            f"prompt of {prompt_tokens} tokens does not fit the context of {context_size} tokens"
            + (f" with room for {max_new_tokens} new tokens" if max_new_tokens else "")
            + ": shorten the conversation, lower max_new_tokens, or load the model with a larger n_ctx"
        )


class EngineBusy(HearthError, RuntimeError):
    """The engine's queue is full; retry later."""


class EngineFailed(HearthError, RuntimeError):
    """The engine stopped working (its worker died or it was closed); requests cannot be served."""


class StepFailed(HearthError, RuntimeError):
    """llama.cpp refused a step of the scheduler (a decode, a copy of a cache): the sequences in it
    start over; the engine goes on."""


class InvalidGrammar(HearthError, ValueError):
    """A grammar (or JSON schema) that llama.cpp cannot use to constrain generation."""


class InvalidSetting(HearthError, ValueError):
    """A `HEARTH_*` setting (or the argument that stands for it) has a value the core cannot use."""
