"""Requests to token ids: chat messages through the model's chat template (tools included),
completion prompts through the tokenizer, both off the event loop.

A prompt far too long for the context is refused by its length in characters before any
tokenizing: no token of this tokenizer spans more than `max_token_chars` characters, so a text
longer than that times the context cannot fit, and a 4 MB prompt costs a `len()`, not seconds
of tokenizing while /health waits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import jinja2

from llmserve import protocol
from llmserve.errors import APIError

FALLBACK_TOKEN_CHARS = 64  # tokenizers without get_vocab (the built-in ChatGLM2 one)
# chat_template_kwargs may not override what the server itself passes to the template
_RESERVED_TEMPLATE_ARGS = {"conversation", "messages", "tools", "tokenize", "return_dict"}


def max_token_chars(tokenizer: Any) -> int:
    """The most characters one token of `tokenizer` can stand for (an upper bound)."""
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if get_vocab is None:
        return FALLBACK_TOKEN_CHARS
    try:
        vocab = get_vocab()
    except Exception:  # a tokenizer that cannot list itself: stay safe, not exact
        return FALLBACK_TOKEN_CHARS
    return max((len(token) for token in vocab), default=FALLBACK_TOKEN_CHARS) or 1


def check_chars(chars: int, max_model_len: int, token_chars: int, param: str) -> None:
    if chars > max_model_len * token_chars:
        raise APIError(
            400,
            f"{param}: the prompt is {chars} characters, more than fit in this model's "
            f"context of max_model_len={max_model_len} tokens (at most {token_chars} "
            "characters a token); shorten it",
            param=param,
            code="context_length_exceeded",
        )


def _arguments(text: str) -> Any:
    """Templates (Qwen, Hermes, GLM) expect a call's arguments as an object, not JSON text."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, dict) else text


def turns(messages: Sequence[protocol.ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        turn: dict[str, Any] = {
            "role": "system" if m.role == "developer" else m.role,
            "content": m.text(),
        }
        if m.name is not None:
            turn["name"] = m.name
        if m.tool_calls:
            turn["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": _arguments(call.function.arguments),
                    },
                }
                for call in m.tool_calls
            ]
        if m.tool_call_id is not None:
            turn["tool_call_id"] = m.tool_call_id
        out.append(turn)
    return out


def tool_dicts(tools: Sequence[protocol.Tool] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    return [t.model_dump(by_alias=True, exclude_none=True, exclude_unset=False) for t in tools]


def render_chat(
    tokenizer: Any,
    messages: Sequence[protocol.ChatMessage],
    tools: Sequence[protocol.Tool] | None = None,
    template_kwargs: dict[str, Any] | None = None,
    add_generation_prompt: bool = True,
) -> list[int]:
    """Blocking: call it through `in_thread`."""
    conversation = turns(messages)
    tool_list = tool_dicts(tools)
    if getattr(tokenizer, "chat_template", None) is None:
        text = "".join(f"{t['role']}: {t['content']}\n" for t in conversation)
        return list(tokenizer.encode(text + ("assistant:" if add_generation_prompt else "")))
    extra = {k: v for k, v in (template_kwargs or {}).items() if k not in _RESERVED_TEMPLATE_ARGS}
    extra.setdefault("add_generation_prompt", add_generation_prompt)
    try:
        ids = tokenizer.apply_chat_template(
            conversation, tools=tool_list, tokenize=True, return_dict=False, **extra
        )
    except (jinja2.TemplateError, TypeError, ValueError) as err:
        raise APIError(
            400,
            f"messages: the model's chat template refused them: {str(err)[:300]}",
            param="messages",
            code="invalid_messages",
        ) from None
    if isinstance(ids, dict):  # some tokenizers return a BatchEncoding regardless
        ids = ids["input_ids"]
    return [int(t) for t in ids]


def encode_text(tokenizer: Any, text: str, add_special_tokens: bool = True) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=add_special_tokens))


def check_token_ids(ids: Sequence[int], vocab_size: int, param: str) -> list[int]:
    bad = [t for t in ids if not 0 <= t < vocab_size]
    if bad:
        raise APIError(
            400,
            f"{param}: token id {bad[0]} is out of range; allowed: 0..{vocab_size - 1}",
            param=param,
            code="invalid_value",
        )
    return list(ids)


async def in_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Tokenizing and template rendering run in a worker thread: the event loop keeps
    answering /health and streaming other requests meanwhile."""
    return await asyncio.to_thread(function, *args, **kwargs)
