"""Wire fields to `engine_api.SamplingParams`: every sampling and output field of both routes,
with the checks that need the model (vocabulary, context) and OpenAI-style 400s naming the field.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from llmserve import protocol
from llmserve.engine_api import SamplingParams, StructuredOutput
from llmserve.errors import APIError
from llmserve.tool_parsers import forced

SEED_SPAN = protocol.SEED_RANGE[1] - protocol.SEED_RANGE[0] + 1


def token_budget(body: Any, prompt_tokens: int, max_model_len: int, prompt_param: str) -> int:
    """max_tokens for the engine: what the client asked for, or all the room left."""
    if prompt_tokens >= max_model_len:
        raise APIError(
            400,
            f"{prompt_param}: the prompt is {prompt_tokens} tokens; this model's context is "
            f"max_model_len={max_model_len} tokens (prompt plus output), so the prompt must be "
            f"at most {max_model_len - 1}",
            param=prompt_param,
            code="context_length_exceeded",
        )
    room = max_model_len - prompt_tokens
    limit = body.token_limit()
    if limit is not None and limit > room:
        raise APIError(
            400,
            f"{body.limit_param}={limit} is too large: the prompt uses {prompt_tokens} of the "
            f"{max_model_len}-token context; allowed: 1..{room}",
            param=body.limit_param,
            code="context_length_exceeded",
        )
    return room if limit is None else limit


def _token_ids(values: list[int], vocab_size: int, param: str) -> tuple[int, ...]:
    for value in values:
        if not 0 <= value < vocab_size:
            raise APIError(
                400,
                f"{param}: token id {value} is out of range; allowed: 0..{vocab_size - 1}",
                param=param,
                code="invalid_value",
            )
    return tuple(values)


def _logit_bias(bias: dict[str, float] | None, vocab_size: int) -> tuple[tuple[int, float], ...]:
    out: list[tuple[int, float]] = []
    for key, value in (bias or {}).items():
        if not (key.isascii() and key.isdigit() and len(key) <= 12):
            raise APIError(
                400,
                f"logit_bias: key {key[:40]!r} is not a token id; allowed: token ids as "
                f"strings, '0'..'{vocab_size - 1}'",
                param="logit_bias",
                code="invalid_value",
            )
        (token,) = _token_ids([int(key)], vocab_size, "logit_bias")
        out.append((token, float(value)))
    return tuple(out)


def _schema_text(schema: Any, param: str) -> str:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError:
            raise APIError(
                400, f"{param} is not valid JSON", param=param, code="invalid_value"
            ) from None
    if not isinstance(schema, dict):
        raise APIError(
            400, f"{param} must be a JSON Schema object", param=param, code="invalid_value"
        )
    return json.dumps(schema)


def structured(body: Any) -> StructuredOutput | None:
    """response_format (json_object / json_schema) or vLLM's guided_json."""
    if body.guided_json is not None:
        return StructuredOutput("json_schema", _schema_text(body.guided_json, "guided_json"))
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return StructuredOutput("json_object")
    schema = fmt.json_schema.schema_ if fmt.json_schema is not None else None
    if schema is None:
        return StructuredOutput("json_object")
    return StructuredOutput("json_schema", _schema_text(schema, "response_format.json_schema"))


def tool_constraint(body: protocol.ChatCompletionRequest) -> StructuredOutput | None:
    """A forced call (a named function, or "required") decodes constrained JSON."""
    choice = body.tool_choice
    tools = body.tools or []
    if isinstance(choice, protocol.NamedToolChoice):
        fn = next(t.function for t in tools if t.function.name == choice.function.name)
        return StructuredOutput("json_schema", forced.named_schema(fn.parameters))
    if choice == "required":
        schema = forced.required_schema([(t.function.name, t.function.parameters) for t in tools])
        return StructuredOutput("json_schema", schema)
    return None


def sampling(
    body: Any,
    *,
    max_tokens: int,
    vocab_size: int,
    logprobs: int | None,
    prompt_logprobs: int | None = None,
    structured_output: StructuredOutput | None = None,
) -> SamplingParams:
    min_tokens = body.min_tokens or 0
    if min_tokens > max_tokens:
        raise APIError(
            400,
            f"min_tokens={min_tokens} exceeds max_tokens={max_tokens}; allowed: 0..{max_tokens}",
            param="min_tokens",
            code="invalid_value",
        )
    top_k = body.top_k or 0
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=tuple(body.stop_list()),
        ignore_eos=bool(body.ignore_eos),
        min_tokens=min_tokens,
        top_k=0 if top_k < 0 else top_k,
        min_p=body.min_p or 0.0,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        repetition_penalty=1.0 if body.repetition_penalty is None else body.repetition_penalty,
        logit_bias=_logit_bias(body.logit_bias, vocab_size),
        stop_token_ids=_token_ids(body.stop_token_ids or [], vocab_size, "stop_token_ids"),
        logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,
        structured=structured_output,
    )


def per_choice(params: SamplingParams, n: int) -> list[SamplingParams]:
    """n choices are n engine requests; with a seed, choice i uses seed + i (wrapping), so the
    whole response is reproducible and the choices differ."""
    if params.seed is None:
        return [params] * n
    low = protocol.SEED_RANGE[0]
    return [replace(params, seed=(params.seed + i - low) % SEED_SPAN + low) for i in range(n)]
