"""One `SamplingParams` object per request, turned into one llama.cpp sampler chain.

The chain runs in C over the whole vocabulary; Python only sees the chosen token id.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace

import llama_cpp as C
from llama_cpp import llama_grammar

from native.errors import InvalidGrammar
from native.llama import Model, SamplerChain

PENALTIES_OFF = {"repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop. Upper layers validate ranges; this is the engine's copy."""

    temperature: float = 0.8
    """0 means greedy: the most likely token every time, fully deterministic."""
    top_k: int = 40
    """Keep the k most likely tokens (0 keeps all)."""
    top_p: float = 0.95
    """Keep the smallest set of tokens whose probabilities add up to p (1.0 keeps all)."""
    min_p: float = 0.05
    """Drop tokens less likely than min_p times the most likely one (0 keeps all)."""
    repetition_penalty: float = 1.0
    """Divide the logits of recently seen tokens by this (1.0 is off)."""
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_last_n: int = 64
    """How many recent tokens the penalties look at."""
    seed: int | None = None
    """A fixed seed makes sampling at temperature > 0 reproducible; None draws a fresh one."""
    max_new_tokens: int = 256
    """Generation ends with finish_reason `length` after this many tokens."""
    stop: tuple[str, ...] = field(default_factory=tuple)
    """Generation ends when any of these appears; the stop string itself is never emitted."""
    grammar: str | None = None
    """A GBNF grammar (root rule `root`) the output must follow; see `json_grammar` for JSON."""

    def constrained(self, grammar: str) -> SamplingParams:
        """These params with output held to `grammar`, and without repetition penalties: JSON repeats
        its quotes, colons and braces by design, and a penalty would push the model toward whatever
        the grammar still allows instead of what it means."""
        return replace(self, grammar=grammar, **PENALTIES_OFF)

    def for_choice(self, i: int) -> SamplingParams:
        """The sampling of choice `i` of several replies to one prompt: with a seed, seed + i (mod
        2**32), so the choices differ yet each is reproducible; choice 0 is these very params."""
        if i == 0 or self.seed is None:
            return self
        return replace(self, seed=(self.seed + i) % 2**32)

    @property
    def penalises(self) -> bool:
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0


def json_grammar(schema: dict | None = None) -> str:
    """A GBNF grammar for JSON: any JSON object, or one matching a JSON schema."""
    if schema is None:
        return llama_grammar.JSON_GBNF
    try:
        return llama_grammar.json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises bare errors on schemas it does not support
        raise InvalidGrammar(f"cannot turn this JSON schema into a grammar: {exc}") from None


def check_grammar(grammar: str, model: Model) -> None:
    """Raise InvalidGrammar now, in the caller's thread, if llama.cpp cannot parse `grammar`."""
    handle = C.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
    if not handle:
        raise InvalidGrammar("llama.cpp could not parse the grammar; check its GBNF syntax")
    C.llama_sampler_free(handle)


def build_sampler(params: SamplingParams, model: Model) -> SamplerChain:
    """A sampler chain in llama.cpp's usual order: penalties, then truncation, then temperature, then draw."""
    chain = SamplerChain()
    try:
        if params.grammar:
            grammar = C.llama_sampler_init_grammar(model.vocab, params.grammar.encode(), b"root")
            if not grammar:
                raise InvalidGrammar("llama.cpp could not parse the grammar; check its GBNF syntax")
            chain.add(grammar)  # first: only tokens the grammar allows reach the other samplers
        if params.penalises:
            chain.add(
                C.llama_sampler_init_penalties(
                    model.n_vocab,
                    params.penalty_last_n,
                    params.repetition_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                )
            )
        if params.temperature <= 0:
            chain.add(C.llama_sampler_init_greedy())
            return chain
        if params.top_k > 0:
            chain.add(C.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            chain.add(C.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            chain.add(C.llama_sampler_init_min_p(params.min_p, 1))
        chain.add(C.llama_sampler_init_temp(params.temperature))
        seed = params.seed if params.seed is not None else random.getrandbits(32)
        chain.add(C.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain
    except BaseException:
        chain.close()
        raise
