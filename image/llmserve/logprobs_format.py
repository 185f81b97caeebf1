"""Log-probabilities from the engine (`TokenLogprob`) in OpenAI's two wire shapes: chat's
`logprobs.content[]` (token, logprob, bytes, top_logprobs) and completions' parallel lists
(tokens, token_logprobs, top_logprobs, text_offset), echo's prompt included."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from llmserve.engine_api import TokenLogprob

FLOOR = -9999.0  # JSON has no -inf; vLLM answers this for impossible tokens


def _value(logprob: float) -> float:
    return FLOOR if math.isinf(logprob) or math.isnan(logprob) else max(FLOOR, float(logprob))


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": _value(logprob), "bytes": list(token.encode("utf-8"))}


def chat_logprobs(
    items: Sequence[TokenLogprob], token_text: Callable[[int], str], top_n: int
) -> dict[str, Any]:
    content = []
    for item in items:
        entry = _entry(token_text(item.token_id), item.logprob)
        entry["top_logprobs"] = [
            _entry(token_text(token_id), logprob) for token_id, logprob in item.top[:top_n]
        ]
        content.append(entry)
    return {"content": content}


def completion_logprobs(
    items: Sequence[TokenLogprob | None],
    token_ids: Sequence[int],
    token_text: Callable[[int], str],
    top_n: int,
    start_offset: int = 0,
) -> dict[str, Any]:
    """`items[i]` belongs to `token_ids[i]`; None (the first prompt token) has no logprob."""
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float] | None] = []
    offsets: list[int] = []
    offset = start_offset
    for token_id, item in zip(token_ids, items, strict=False):
        text = token_text(token_id)
        tokens.append(text)
        offsets.append(offset)
        offset += len(text)
        if item is None:
            token_logprobs.append(None)
            top_logprobs.append(None)
            continue
        token_logprobs.append(_value(item.logprob))
        top = {token_text(t): _value(lp) for t, lp in item.top[:top_n]}
        top.setdefault(text, _value(item.logprob))  # OpenAI lists the chosen token too
        top_logprobs.append(top)
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": offsets,
    }


def merge_completion(first: dict[str, Any] | None, later: dict[str, Any]) -> dict[str, Any]:
    if first is None:
        return later
    return {key: first[key] + later[key] for key in first}
