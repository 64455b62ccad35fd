"""The request bodies of /v1/chat/completions and /v1/completions, in OpenAI's names.

Only the shape is checked here. Every sampling value goes through `GenerationSettings` (its ranges are
written once, there); this module maps OpenAI's names onto it and back for error messages.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Literal

from langchain_core.messages import BaseMessage
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from llm.rest import tools
from llm.rest.errors import APIError, validation_error
from llm.settings import GenerationSettings
from native.sampling import PENALTIES_OFF, SamplingParams, json_grammar

MAX_CHOICES = 16

# OpenAI's name -> GenerationSettings' name, for every knob a request may set.
SETTINGS_NAMES = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "max_tokens": "max_new_tokens",
    "seed": "seed",
    "stop": "stop",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "repetition_penalty": "repetition_penalty",
}
OPENAI_NAMES = {ours: theirs for theirs, ours in SETTINGS_NAMES.items()}

log = logging.getLogger("hearth.rest")

# Fields of OpenAI's API that ask for nothing a local model's reply depends on (storage, billing tier,
# cache routing, abuse tracking, latency hints, reasoning models' effort): clients send them as a
# matter of course, so they are ignored (logged once per name) rather than refused. A field whose
# meaning Hearth cannot honour is refused instead (`refuse_unsupported`): never a silent change.
IGNORED_OPENAI_FIELDS = frozenset(
    {
        "store",
        "metadata",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
        "prediction",
        "reasoning_effort",
        "verbosity",
    }
)


@functools.cache
def _log_ignored(name: str) -> None:
    """Once per field name and process: a client sends the same fields with every request."""
    log.info("ignoring the OpenAI field %r: it changes nothing a local model does", name)


class Strict(BaseModel):
    """Unknown fields are refused (with their name) rather than silently ignored, as OpenAI does."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StreamOptions(Strict):
    include_usage: bool = Field(False, description="Send one last chunk with the token usage.")


class JSONSchemaFormat(Strict):
    name: str = "response"
    description: str | None = None
    schema_: dict = Field(alias="schema", description="The JSON schema the reply must match.")
    strict: bool | None = None


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class GenerationRequest(Strict):
    """What chat and text completions share."""

    model: str | None = Field(None, description="A served model's UID (see /v1/models).")
    stream: bool = Field(False, description="Send the reply as server-sent events, ending in [DONE].")
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=MAX_CHOICES, description="How many replies to generate.")
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = Field(None, description="llama.cpp's and vLLM's extension.")
    min_p: float | None = Field(None, description="llama.cpp's and vLLM's extension.")
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = Field(
        None,
        validation_alias=AliasChoices("repetition_penalty", "repeat_penalty"),
        description="vLLM's name; llama.cpp's `repeat_penalty` is accepted too.",
    )
    grammar: str | None = Field(None, description="A GBNF grammar the reply must follow (llama.cpp's).")
    response_format: ResponseFormat | None = None
    user: str | None = Field(None, description="Used as the session when `session_id` is not given.")
    session_id: str | None = Field(None, description="Keeps this conversation's KV cache in one slot.")
    logit_bias: dict[str, float] | None = None
    modalities: list[str] | None = Field(None, description='Only ["text"]: Hearth generates text.')

    @model_validator(mode="before")
    @classmethod
    def _drop_ignored_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and (ignored := IGNORED_OPENAI_FIELDS & data.keys()):
            for name in sorted(ignored):
                _log_ignored(name)
            data = {k: v for k, v in data.items() if k not in ignored}
        return data

    @property
    def session(self) -> str | None:
        return self.session_id or self.user or None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def token_limit(self) -> int | None:
        return self.max_tokens

    def settings(self) -> GenerationSettings:
        """The request's knobs, validated by GenerationSettings; what is left out takes its defaults."""
        values = {name: getattr(self, name) for name in SETTINGS_NAMES if getattr(self, name) is not None}
        values["max_tokens"] = self.token_limit()
        values = {SETTINGS_NAMES[k]: v for k, v in values.items() if v is not None}
        if isinstance(values.get("stop"), str):
            values["stop"] = [values["stop"]]
        try:
            return GenerationSettings.model_validate(values)
        except ValidationError as exc:
            raise validation_error(exc, OPENAI_NAMES) from None

    def sampling(self, extra_stop: tuple[str, ...] = ()) -> SamplingParams:
        """The engine's parameters: the settings, the template's stop strings, and any grammar."""
        params = self.settings().sampling(extra_stop)
        grammar = self.grammar_text()
        if grammar is None:
            return params
        # JSON repeats its braces and quotes by design: a penalty pushes the model toward whatever the
        # grammar still allows instead of what it means. Constrained output runs without them: the
        # default is left out, an explicit penalty refused rather than silently dropped.
        asked = [name for name, off in PENALTIES_OFF.items() if getattr(self, name) not in (None, off)]
        if asked:
            raise APIError(
                400, f"{asked[0]} cannot be combined with a grammar or response_format", param=asked[0]
            )
        return params.constrained(grammar)

    def grammar_text(self) -> str | None:
        fmt = self.response_format
        if self.grammar and fmt is not None and fmt.type != "text":
            raise APIError(400, "give either grammar or response_format, not both", param="grammar")
        if self.grammar:
            return self.grammar
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return json_grammar(None)
        if fmt.json_schema is None:
            raise APIError(400, "type json_schema needs a json_schema", param="response_format.json_schema")
        return json_grammar(fmt.json_schema.schema_)

    def refuse_unsupported(self) -> None:
        """Fields OpenAI defines that Hearth cannot honour yet: refused unless at their no-op value."""
        if self.logit_bias:
            raise APIError(400, "logit_bias is not supported", param="logit_bias")
        if self.modalities not in (None, ["text"]):
            raise APIError(400, "only the text modality is supported", param="modalities")


class TextPart(Strict):
    type: Literal["text"]
    text: str


class FunctionCall(Strict):
    name: str
    arguments: str = Field(description="The arguments as a JSON object string.")


class ToolCall(Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDef(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict | None = Field(None, description="The arguments' JSON schema.")
    strict: bool | None = None


class Tool(Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(Strict):
    name: str


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: NamedFunction


class Message(Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def turn(self) -> dict[str, Any]:
        """This message as an OpenAI message dict with plain-text content."""
        content = self.content or ""
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        turn: dict[str, Any] = {
            "role": "system" if self.role == "developer" else self.role,
            "content": content,
        }
        if self.tool_calls:
            turn["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.tool_call_id is not None:
            turn["tool_call_id"] = self.tool_call_id
        return turn


class ChatRequest(GenerationRequest):
    """POST /v1/chat/completions."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, description="OpenAI's newer name for max_tokens.")
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = Field(None, description="Accepted; a reply holds at most one call.")

    def turns(self) -> list[dict[str, Any]]:
        """The messages as OpenAI message dicts (what a remote server receives)."""
        return [message.turn() for message in self.messages]

    def conversation(self) -> list[BaseMessage]:
        """The messages as LangChain messages, tool calls and results included."""
        return tools.conversation(self.turns())

    def tool_dicts(self) -> list[dict[str, Any]]:
        return [tool.model_dump(exclude_none=True) for tool in self.tools or []]

    def choice(self) -> str | None:
        """The tool choice ("auto", "none", "any" or a tool's name), None when no tools are given."""
        if not self.tools:
            if self.tool_choice not in (None, "none"):
                raise APIError(400, "tool_choice needs tools", param="tool_choice")
            return None
        if self.response_format is not None and self.response_format.type != "text" or self.grammar:
            raise APIError(400, "give either tools or a response_format/grammar, not both", param="tools")
        choice = (
            self.tool_choice.model_dump() if isinstance(self.tool_choice, BaseModel) else self.tool_choice
        )
        return tools.choice_of(choice, self.tool_dicts())

    def token_limit(self) -> int | None:
        if None not in (self.max_tokens, self.max_completion_tokens) and (
            self.max_tokens != self.max_completion_tokens
        ):
            raise APIError(400, "max_tokens and max_completion_tokens differ", param="max_completion_tokens")
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.logprobs or self.top_logprobs:
            raise APIError(400, "logprobs are not supported", param="logprobs")


class CompletionRequest(GenerationRequest):
    """POST /v1/completions."""

    prompt: str | list[str] = Field(description="The text to continue, as is (no chat template).")
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None
    logprobs: int | None = None

    def text(self) -> str:
        prompt = self.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise APIError(400, "send one prompt per request", param="prompt")
            prompt = prompt[0]
        if not prompt:
            raise APIError(400, "the prompt is empty", param="prompt")
        return prompt

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        for name, unset in (("echo", False), ("suffix", None), ("logprobs", None)):
            if getattr(self, name) != unset:
                raise APIError(400, f"{name} is not supported", param=name)
        if self.best_of not in (None, 1):
            raise APIError(400, "best_of is not supported; use n", param="best_of")


class ResetRequest(BaseModel):
    """POST /chat/reset: MLC's clients send their whole chat payload, so other fields are ignored."""

    model: str | None = None
    session_id: str | None = None
    user: str | None = None
