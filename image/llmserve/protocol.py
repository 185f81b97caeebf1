"""The OpenAI wire protocol: request models and the response and chunk bodies.

Lenient where the ecosystem is: fields this server does not know are accepted and ignored (the
app logs each name once), as vLLM does, because clients such as LangChain, guidellm and agent
frameworks send `store`, `metadata`, `parallel_tool_calls` and the like. Strict where it
matters: every field this server does know keeps its type (no coercion: "5" is not 5) and its
range, so a wrong value is a 400 naming the field. Nothing here knows about engines or HTTP."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

MAX_STOP_SEQUENCES = 4
MAX_N = 128
MAX_LOGPROBS = 20  # vLLM's default max_logprobs; OpenAI allows 20 top_logprobs
SEED_RANGE = (-(2**63), 2**64 - 1)
TOOL_PARAM_TYPES = ("function",)


class _Lenient(BaseModel):
    """Known fields strict, unknown fields kept aside in `model_extra` (logged, then ignored)."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)

    def unknown_fields(self, prefix: str = "") -> list[str]:
        """Dotted names of every unknown field in this body and the models inside it."""
        names = [f"{prefix}{name}" for name in self.model_extra or {}]
        for name in type(self).model_fields:
            value = getattr(self, name)
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, _Lenient):
                    names.extend(item.unknown_fields(f"{prefix}{name}."))
        return names


# ----------------------------------------------------------------------------- messages
class TextPart(_Lenient):
    type: Literal["text"]
    text: StrictStr


class OtherPart(_Lenient):
    """Images, audio, files: parsed so the refusal names the part's type."""

    type: Literal["image_url", "input_audio", "file", "video_url", "audio_url", "refusal"]


ContentPart = Annotated[TextPart | OtherPart, Field(discriminator="type")]


class FunctionCall(_Lenient):
    name: StrictStr
    arguments: StrictStr  # JSON text, as OpenAI sends it


class ToolCall(_Lenient):
    id: StrictStr
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[ContentPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: StrictStr | None = None

    @model_validator(mode="after")
    def _content_rules(self) -> ChatMessage:
        # As OpenAI: content may be null only on an assistant turn that calls tools.
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(
                f"content is null on a {self.role!r} message; allowed: a string or a list "
                "of content parts (null only on an assistant message with tool_calls)"
            )
        if self.role == "tool" and self.tool_call_id is None:
            raise ValueError("a 'tool' message needs tool_call_id (the id of the call it answers)")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    def non_text_part(self) -> tuple[int, str] | None:
        if isinstance(self.content, list):
            for i, part in enumerate(self.content):
                if not isinstance(part, TextPart):
                    return i, part.type
        return None


# ----------------------------------------------------------------------------- tools
class FunctionDef(_Lenient):
    name: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.\-]+$")]
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class Tool(_Lenient):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Lenient):
    name: StrictStr


class NamedToolChoice(_Lenient):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


# ----------------------------------------------------------------------------- formats
class JsonSchemaFormat(_Lenient):
    name: StrictStr | None = None
    description: StrictStr | None = None
    schema_: Annotated[dict[str, Any] | None, Field(alias="schema")] = None
    strict: StrictBool | None = None


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and (self.json_schema is None):
            raise ValueError("type 'json_schema' needs json_schema: {name, schema}")
        return self


class StreamOptions(_Lenient):
    include_usage: StrictBool | None = False
    continuous_usage_stats: StrictBool | None = False  # vLLM: usage on every chunk


def stream_usage(options: StreamOptions | None) -> tuple[bool, bool]:
    """(usage in a final chunk, usage on every chunk): the second only with the first, as vLLM."""
    include = bool(options and options.include_usage)
    return include, include and bool(options and options.continuous_usage_stats)


Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(gt=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
Bias = Annotated[float, Field(ge=-100.0, le=100.0)]
TokenId = Annotated[int, Field(ge=0)]


class _SamplingFields(_Lenient):
    """Fields shared by both generation endpoints. `None` is the same as leaving a field out
    (clients send explicit nulls), except where OpenAI gives null a meaning."""

    model: StrictStr | None = None
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N)] | None = None
    best_of: Annotated[int, Field(ge=1, le=MAX_N)] | None = None
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    stop: StrictStr | list[StrictStr] | None = None
    seed: Annotated[int, Field(ge=SEED_RANGE[0], le=SEED_RANGE[1])] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Bias] | None = None
    user: StrictStr | None = None
    response_format: ResponseFormat | None = None
    # vLLM's extra sampling parameters
    top_k: Annotated[int, Field(ge=-1)] | None = None
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0.0, le=10.0)] | None = None
    stop_token_ids: list[TokenId] | None = None
    ignore_eos: StrictBool | None = False
    min_tokens: Annotated[int, Field(ge=0)] | None = None
    guided_json: StrictStr | dict[str, Any] | None = None

    @property
    def choices_per_prompt(self) -> int:
        return self.n or 1

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def unsupported(self) -> tuple[str, str] | None:
        """(param, message) for a valid-looking request this server will not honour."""
        stops = self.stop_list()
        if len(stops) > MAX_STOP_SEQUENCES:
            return "stop", f"{len(stops)} stop sequences given; allowed: at most 4"
        if any(not s for s in stops):
            return "stop", "an empty stop sequence was given; allowed: non-empty strings"
        if self.stream_options is not None and not self.stream:
            return "stream_options", "stream_options is only allowed when stream is true"
        if self.best_of is not None and self.best_of != self.choices_per_prompt:
            return "best_of", (
                f"best_of={self.best_of} is not supported; allowed: null or equal to n "
                f"({self.choices_per_prompt})"
            )
        fmt = self.response_format
        if self.guided_json is not None and fmt is not None and fmt.type != "text":
            return "guided_json", "give guided_json or response_format, not both"
        return None


class ChatCompletionRequest(_SamplingFields):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: StrictBool | None = False
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_max(self) -> ChatCompletionRequest:
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("give max_tokens or max_completion_tokens, not both")
        return self

    def token_limit(self) -> int | None:
        return (
            self.max_completion_tokens
            if self.max_completion_tokens is not None
            else self.max_tokens
        )

    @property
    def limit_param(self) -> str:
        return "max_completion_tokens" if self.max_completion_tokens is not None else "max_tokens"

    def unsupported(self) -> tuple[str, str] | None:
        if self.max_tokens == 0:
            return "max_tokens", "max_tokens=0; allowed: at least 1"
        if self.top_logprobs and not self.logprobs:
            return "top_logprobs", "top_logprobs needs logprobs=true"
        for i, message in enumerate(self.messages):
            part = message.non_text_part()
            if part is not None:
                return f"messages.{i}.content.{part[0]}.type", (
                    f"content part type {part[1]!r} is not supported by this text-only "
                    "model; allowed: 'text'"
                )
        names = [t.function.name for t in self.tools or []]
        if len(set(names)) != len(names):
            return "tools", "two tools share one function name; allowed: unique names"
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            shown = choice.function.name[:200]
            return "tool_choice", (
                f"tool_choice names function {shown!r}, which is not in tools; allowed: "
                + (", ".join(repr(n) for n in names) if names else "(no tools given)")
            )
        if choice == "required" and not names:
            return "tool_choice", "tool_choice 'required' needs at least one tool in tools"
        return super().unsupported()


class CompletionRequest(_SamplingFields):
    prompt: (
        StrictStr
        | Annotated[list[StrictStr], Field(min_length=1)]
        | Annotated[list[StrictInt], Field(min_length=1)]
        | Annotated[list[Annotated[list[StrictInt], Field(min_length=1)]], Field(min_length=1)]
    )
    max_tokens: Annotated[int, Field(ge=0)] | None = 16  # the OpenAI default for completions
    echo: StrictBool | None = False
    logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None
    suffix: StrictStr | None = None

    def token_limit(self) -> int | None:
        return self.max_tokens

    @property
    def limit_param(self) -> str:
        return "max_tokens"

    def prompts(self) -> list[str | list[int]]:
        """The prompts of a batch request, one per entry (a string or token ids)."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]

    def unsupported(self) -> tuple[str, str] | None:
        if self.suffix is not None:
            return "suffix", "suffix is not supported; allowed: null"
        if self.max_tokens == 0 and not self.echo:
            return "max_tokens", (
                "max_tokens=0 is only allowed with echo=true (to score the prompt); allowed: "
                "at least 1"
            )
        return super().unsupported()


class TokenizeRequest(_Lenient):
    """vLLM's /tokenize: a prompt, or chat messages rendered through the chat template."""

    model: StrictStr | None = None
    prompt: StrictStr | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: StrictBool | None = None
    add_generation_prompt: StrictBool | None = True
    return_token_strs: StrictBool | None = False
    tools: list[Tool] | None = None

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt or messages")
        return self


class DetokenizeRequest(_Lenient):
    model: StrictStr | None = None
    tokens: list[TokenId]


# ----------------------------------------------------------------------------- responses
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def chat_message(text: str | None, tool_calls: list[dict[str, Any]] | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def chat_completion(
    id_: str,
    model: str,
    choices: list[dict[str, Any]],
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_choice(
    index: int,
    message: dict[str, Any],
    finish_reason: str,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "index": index,
        "message": message,
        "finish_reason": finish_reason,
        "logprobs": logprobs,
    }


def _chunk(
    object_: str,
    id_: str,
    model: str,
    created: int,
    choices: list[dict[str, Any]],
    usage_: dict[str, int] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": id_,
        "object": object_,
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage_ is not None:
        body["usage"] = usage_
    return body


def chat_chunk(
    id_: str,
    model: str,
    created: int,
    choices: list[dict[str, Any]],
    usage_: dict[str, int] | None = None,
) -> dict[str, Any]:
    return _chunk("chat.completion.chunk", id_, model, created, choices, usage_)


def chat_chunk_choice(
    index: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}


def completion(
    id_: str,
    model: str,
    choices: list[dict[str, Any]],
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage(prompt_tokens, completion_tokens),
    }


def completion_choice(
    index: int, text: str, finish_reason: str | None, logprobs: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"index": index, "text": text, "finish_reason": finish_reason, "logprobs": logprobs}


def completion_chunk(
    id_: str,
    model: str,
    created: int,
    choices: list[dict[str, Any]],
    usage_: dict[str, int] | None = None,
) -> dict[str, Any]:
    return _chunk("text_completion", id_, model, created, choices, usage_)


def model_card(model: str, created: int, max_model_len: int) -> dict[str, Any]:
    return {
        "id": model,
        "object": "model",
        "created": created,
        "owned_by": "llmserve",
        "root": model,
        "parent": None,
        "max_model_len": max_model_len,
    }


def model_list(model: str, created: int, max_model_len: int) -> dict[str, Any]:
    return {"object": "list", "data": [model_card(model, created, max_model_len)]}
