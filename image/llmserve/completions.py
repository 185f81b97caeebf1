"""/v1/completions once the request is checked: a batch of prompts x n choices (choice index =
prompt index x n + j, as OpenAI and vLLM number them), echo, logprobs, streaming.

`echo` puts the prompt's text before the answer; with `logprobs` the prompt's tokens get their
logprobs too (the first one has none: nothing comes before it). `max_tokens: 0` with `echo`
scores the prompt alone (lm-eval-harness asks this way): one token is generated and dropped."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from llmserve import protocol
from llmserve.engine_api import Delta, TokenLogprob
from llmserve.generation import (
    SPLICE,
    Run,
    TextFrames,
    close_all,
    event_frames,
    interleave,
    is_failure,
    single_choice_frames,
    stream_error,
)
from llmserve.logprobs_format import completion_logprobs


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    text: str  # for echo: the text as sent, or the ids decoded


@dataclass(frozen=True)
class Options:
    echo: bool
    logprobs: int | None
    score_only: bool  # max_tokens 0 with echo: drop the one generated token


def _prompt_part(
    prompt: Prompt, delta: Delta, opts: Options, token_text: Callable[[int], str]
) -> dict[str, Any] | None:
    if opts.logprobs is None:
        return None
    given = delta.prompt_logprobs
    items: list[TokenLogprob | None] = (
        list(given) if given is not None else [None] * len(prompt.ids)
    )
    return completion_logprobs(items, prompt.ids, token_text, opts.logprobs)


def _answer_part(
    delta: Delta, opts: Options, token_text: Callable[[int], str], start: int
) -> dict[str, Any] | None:
    if opts.logprobs is None or opts.score_only:
        return None
    return completion_logprobs(
        list(delta.logprobs), list(delta.token_ids), token_text, opts.logprobs, start
    )


def _join(first: dict[str, Any] | None, later: dict[str, Any] | None) -> dict[str, Any] | None:
    if first is None or later is None:
        return first if later is None else later
    return {key: first[key] + later[key] for key in first}


def _generated(delta: Delta, opts: Options) -> str:
    return "" if opts.score_only else delta.text


def reply(
    id_: str,
    model: str,
    prompts: list[Prompt],
    n: int,
    deltas: list[Delta],
    opts: Options,
    token_text: Callable[[int], str],
) -> dict[str, Any]:
    choices = []
    for index, delta in enumerate(deltas):
        prompt = prompts[index // n]
        head = prompt.text if opts.echo else ""
        logprobs = _join(
            _prompt_part(prompt, delta, opts, token_text) if opts.echo else None,
            _answer_part(delta, opts, token_text, len(head)),
        )
        if opts.logprobs is not None and logprobs is None:
            logprobs = completion_logprobs([], [], token_text, opts.logprobs)
        finish = "length" if opts.score_only else (delta.finish_reason or "stop")
        choices.append(
            protocol.completion_choice(index, head + _generated(delta, opts), finish, logprobs)
        )
    prompt_tokens = sum(len(p.ids) for p in prompts)
    completion = 0 if opts.score_only else sum(d.completion_tokens for d in deltas)
    return protocol.completion(id_, model, choices, prompt_tokens, completion)


def frames(
    runs: list[Run],
    id_: str,
    model: str,
    prompts: list[Prompt],
    n: int,
    opts: Options,
    token_text: Callable[[int], str],
    include_usage: bool,
    continuous_usage: bool,
) -> AsyncIterator[str]:
    """The SSE frames of a streamed answer. One prompt and one choice without echo, logprobs
    or usage per chunk takes the fast path, which writes the same bytes as `events`
    (tests/server/test_stream_fast_path.py holds them equal)."""
    plain = not opts.echo and opts.logprobs is None and not continuous_usage
    if plain and len(runs) == 1:
        fast = plain_frames(runs[0], id_, model, len(prompts[0].ids), include_usage)
        if fast is not None:
            return fast
    return event_frames(
        events(runs, id_, model, prompts, n, opts, token_text, include_usage, continuous_usage),
        lambda: close_all(runs),
    )


def plain_frames(
    run: Run, id_: str, model: str, prompt_tokens: int, include_usage: bool
) -> AsyncIterator[str] | None:
    """`events` for one run without echo or logprobs, spliced (None: cannot splice)."""
    created = int(time.time())

    def chunk(text: str, finish: str | None) -> dict[str, Any]:
        choice = protocol.completion_choice(0, text, finish)
        return protocol.completion_chunk(id_, model, created, [choice])

    text_frame = TextFrames.of(chunk(SPLICE, None))
    if text_frame is None:
        return None

    def closing(delta: Delta) -> list[dict[str, Any]]:
        return [chunk(delta.text, delta.finish_reason)]

    def usage_chunk() -> dict[str, Any]:
        usage = protocol.usage(prompt_tokens, run.completion_tokens)
        return protocol.completion_chunk(id_, model, created, [], usage)

    return single_choice_frames(
        run, [], text_frame, closing, usage_chunk if include_usage else None
    )


async def events(
    runs: list[Run],
    id_: str,
    model: str,
    prompts: list[Prompt],
    n: int,
    opts: Options,
    token_text: Callable[[int], str],
    include_usage: bool,
    continuous_usage: bool,
) -> AsyncIterator[dict[str, Any]]:
    created = int(time.time())
    offsets = [len(prompts[i // n].text) if opts.echo else 0 for i in range(len(runs))]
    echoed = [not opts.echo] * len(runs)

    def chunk(choice: dict[str, Any], run: Run) -> dict[str, Any]:
        usage = run.usage() if continuous_usage else None
        return protocol.completion_chunk(id_, model, created, [choice], usage)

    async for index, delta in interleave(runs):
        run = runs[index]
        if is_failure(delta):
            yield stream_error(delta)
            return
        text = _generated(delta, opts)
        logprobs = _answer_part(delta, opts, token_text, offsets[index])
        offsets[index] += len(text)
        if not echoed[index]:
            echoed[index] = True
            prompt = prompts[index // n]
            head = _prompt_part(prompt, delta, opts, token_text)
            text = prompt.text + text
            logprobs = _join(head, logprobs)
        finish = delta.finish_reason
        if finish is not None and opts.score_only:
            finish = "length"
        if text or finish is not None or logprobs is not None:
            yield chunk(protocol.completion_choice(index, text, finish, logprobs), run)
    if include_usage:
        prompt_tokens = sum(len(p.ids) for p in prompts)
        completion = 0 if opts.score_only else sum(r.completion_tokens for r in runs)
        yield protocol.completion_chunk(
            id_, model, created, [], protocol.usage(prompt_tokens, completion)
        )
