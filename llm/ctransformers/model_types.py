"""ctransformers' `model_type` names and the GGUF architectures (`general.architecture`) they mean.

ctransformers picked the C++ implementation by `model_type`; llama.cpp reads the architecture from the
file. A `model_type` that contradicts the file is refused rather than ignored: it says the program
expects another model than the one it is about to run.
"""

from __future__ import annotations

# ctransformers' names (its README's table, plus the aliases its C++ accepted) -> GGUF architectures.
# Mistral models are llama's architecture in GGUF (TheBloke's Mistral files say "llama").
ARCHITECTURES: dict[str, frozenset[str]] = {
    "llama": frozenset({"llama"}),
    "mistral": frozenset({"llama"}),
    "gpt2": frozenset({"gpt2"}),
    "gptj": frozenset({"gptj"}),
    "gpt_neox": frozenset({"gptneox"}),
    "gptneox": frozenset({"gptneox"}),
    "dolly-v2": frozenset({"gptneox"}),
    "falcon": frozenset({"falcon"}),
    "mpt": frozenset({"mpt"}),
    "starcoder": frozenset({"starcoder"}),
    "gpt_bigcode": frozenset({"starcoder"}),
    "replit": frozenset({"replit"}),
}


class ModelTypeMismatch(ValueError):
    """`model_type` names another kind of model than the file holds."""


def check_model_type(model_type: str | None, architecture: str, path: object) -> None:
    """Refuse a `model_type` the file's architecture contradicts. A GGUF architecture name itself
    (`gemma3`, `qwen2`: models ctransformers never knew) is accepted as well."""
    if model_type is None:
        return
    wanted = model_type.lower()
    expected = ARCHITECTURES.get(wanted, frozenset({wanted}))
    if architecture not in expected:
        fitting = sorted(name for name, archs in ARCHITECTURES.items() if architecture in archs)
        hint = f"model_type={fitting[0]!r}" if fitting else f"model_type={architecture!r}"
        raise ModelTypeMismatch(
            f"model_type={model_type!r} expects a {'/'.join(sorted(expected))} model, but {path} holds a "
            f"{architecture} model: pass {hint} (or leave model_type out)"
        )
