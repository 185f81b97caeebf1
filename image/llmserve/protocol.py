"""The OpenAI wire protocol: request models (strict: wrong types and unknown fields are refused,
never coerced or ignored) and the response and chunk bodies. Nothing here knows about engines
or HTTP frameworks."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

MAX_STOP_SEQUENCES = 4
SEED_RANGE = (-(2**63), 2**64 - 1)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: StrictStr


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Strict):
    include_usage: StrictBool = False


Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(gt=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class _SamplingFields(_Strict):
    """Fields shared by both endpoints. Penalties, n > 1 and logprobs are parsed so that a
    request using them gets a clear 400 naming the field instead of being silently ignored."""

    model: StrictStr | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    n: Annotated[int, Field(ge=1, le=128)] = 1
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    stop: StrictStr | list[StrictStr] | None = None
    seed: Annotated[int, Field(ge=SEED_RANGE[0], le=SEED_RANGE[1])] | None = None
    presence_penalty: Penalty = 0.0
    frequency_penalty: Penalty = 0.0
    user: StrictStr | None = None
    # vLLM-style extensions, so benchmarks can force full-length outputs on random weights
    ignore_eos: StrictBool = False
    min_tokens: Annotated[int, Field(ge=0)] = 0

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def unsupported(self) -> tuple[str, str] | None:
        """(param, message) for a valid-looking request this server will not honour."""
        if self.n != 1:
            return "n", f"n={self.n} is not supported; allowed: 1"
        if self.presence_penalty != 0.0:
            return "presence_penalty", (
                f"presence_penalty={self.presence_penalty} is not supported; allowed: 0"
            )
        if self.frequency_penalty != 0.0:
            return "frequency_penalty", (
                f"frequency_penalty={self.frequency_penalty} is not supported; allowed: 0"
            )
        stops = self.stop_list()
        if len(stops) > MAX_STOP_SEQUENCES:
            return "stop", f"{len(stops)} stop sequences given; allowed: at most 4"
        if any(not s for s in stops):
            return "stop", "an empty stop sequence was given; allowed: non-empty strings"
        if self.stream_options is not None and not self.stream:
            return "stream_options", "stream_options is only allowed when stream is true"
        return None


class ChatCompletionRequest(_SamplingFields):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: StrictBool = False

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

    def unsupported(self) -> tuple[str, str] | None:
        if self.logprobs:
            return "logprobs", "logprobs=true is not supported; allowed: false"
        return super().unsupported()


class CompletionRequest(_SamplingFields):
    prompt: (
        StrictStr
        | Annotated[list[StrictStr], Field(min_length=1, max_length=1)]
        | Annotated[list[StrictInt], Field(min_length=1)]
    )
    max_tokens: Annotated[int, Field(ge=1)] | None = 16  # the OpenAI default for completions
    echo: StrictBool = False
    logprobs: Annotated[int, Field(ge=0)] | None = None
    suffix: StrictStr | None = None

    def token_limit(self) -> int | None:
        return self.max_tokens

    def unsupported(self) -> tuple[str, str] | None:
        if self.echo:
            return "echo", "echo=true is not supported; allowed: false"
        if self.logprobs is not None:
            return "logprobs", "logprobs is not supported; allowed: null"
        if self.suffix is not None:
            return "suffix", "suffix is not supported; allowed: null"
        return super().unsupported()


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


def chat_completion(
    id_: str, model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_chunk(
    id_: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    usage_: dict[str, int] | None = None,
) -> dict[str, Any]:
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
    )
    body: dict[str, Any] = {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage_ is not None:
        body["usage"] = usage_
    return body


def completion(
    id_: str, model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def completion_chunk(
    id_: str,
    model: str,
    created: int,
    text: str | None,
    finish_reason: str | None = None,
    usage_: dict[str, int] | None = None,
) -> dict[str, Any]:
    choices = (
        []
        if text is None
        else [{"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}]
    )
    body: dict[str, Any] = {
        "id": id_,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage_ is not None:
        body["usage"] = usage_
    return body


def model_list(model: str, created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": model, "object": "model", "created": created, "owned_by": "llmserve"}],
    }
