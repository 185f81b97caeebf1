"""The single-choice fast path of streamed answers (chat.plain_frames, completions.plain_frames)
writes the same bytes as the general path (`events` through `event_frames`) for the same deltas:
text with characters JSON must escape, empty deltas, a last delta with and without text, every
finish reason, failures, usage on and off; and the endpoints' `frames` take the fast path only
where it applies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from llmserve import chat, completions
from llmserve.engine_api import Delta, EngineStats
from llmserve.generation import SPLICE, Run, RunRegistry, event_frames
from llmserve.metrics import ServerMetrics
from llmserve.tool_parsers.hermes import HermesParser

PROMPT_TOKENS = 7
TEXTS = ['He said "hi"\\', "\n\t\x00\x1f", "", "é 中文 😀 \u2028", "</script>", "plain"]


class ScriptedStream:
    """A RequestStream's consumer side that hands out a fixed list of deltas one by one."""

    def __init__(self, deltas: list[Delta]) -> None:
        self.prompt_tokens = PROMPT_TOKENS
        self.finished = False
        self._deltas = list(deltas)

    async def next_delta(self) -> Delta:
        await asyncio.sleep(0)  # a real stream suspends here too
        delta = self._deltas.pop(0)
        self.finished = delta.finish_reason is not None
        return delta

    def push_on_loop(self, delta: Delta) -> None:
        self._deltas.append(delta)

    def cancel(self) -> None:
        self.finished = True


def script(final_text: str, reason: str) -> list[Delta]:
    deltas = [Delta(text, i + 1, token_ids=(5,)) for i, text in enumerate(TEXTS)]
    error = 'boom "bad"' if reason == "error" else None
    return [*deltas, Delta(final_text, len(TEXTS) + 1, finish_reason=reason, error=error)]


def run_of(deltas: list[Delta]) -> Run:
    metrics = ServerMetrics(lambda: EngineStats(0, 0, 0, 0), lambda: "m")
    return Run(ScriptedStream(deltas), RunRegistry(), metrics)  # type: ignore[arg-type]


async def joined(frames: AsyncIterator[str]) -> str:
    return "".join([frame async for frame in frames])


def chat_general(run: Run, model: str, include_usage: bool) -> AsyncIterator[str]:
    mode = chat.ToolMode("off")
    events = chat.events(
        [run], "chatcmpl-1", model, mode, HermesParser(), None, str, include_usage, False
    )
    return event_frames(events, run.close)


def completion_general(run: Run, model: str, include_usage: bool) -> AsyncIterator[str]:
    prompts = [completions.Prompt([1] * PROMPT_TOKENS, "the prompt")]
    opts = completions.Options(echo=False, logprobs=None, score_only=False)
    events = completions.events([run], "cmpl-1", model, prompts, 1, opts, str, include_usage, False)
    return event_frames(events, run.close)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both paths stamp `created` from time.time(): hold it still across a second boundary."""
    monkeypatch.setattr(time, "time", lambda: 1_764_633_600.25)


CASES = [
    ("", "length"),
    ("last words", "stop"),
    ("", "stop"),
    ("lost text", "error"),
    ("", "cancelled"),
]


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize(("final_text", "reason"), CASES)
def test_chat_fast_path_writes_the_general_paths_bytes(
    final_text: str, reason: str, include_usage: bool
) -> None:
    deltas = script(final_text, reason)

    async def both() -> tuple[str, str]:
        fast = chat.plain_frames(run_of(deltas), "chatcmpl-1", 'tiny "model"', include_usage)
        assert fast is not None
        general = chat_general(run_of(deltas), 'tiny "model"', include_usage)
        return await joined(fast), await joined(general)

    fast, general = asyncio.run(both())
    assert fast == general
    assert fast.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize(("final_text", "reason"), CASES)
def test_completion_fast_path_writes_the_general_paths_bytes(
    final_text: str, reason: str, include_usage: bool
) -> None:
    deltas = script(final_text, reason)

    async def both() -> tuple[str, str]:
        fast = completions.plain_frames(
            run_of(deltas), "cmpl-1", 'tiny "model"', PROMPT_TOKENS, include_usage
        )
        assert fast is not None
        general = completion_general(run_of(deltas), 'tiny "model"', include_usage)
        return await joined(fast), await joined(general)

    fast, general = asyncio.run(both())
    assert fast == general
    assert fast.endswith("data: [DONE]\n\n")


def test_both_paths_close_their_run_and_observe_it_once() -> None:
    async def finished_runs() -> list[Run]:
        runs = [run_of(script("", "length")) for _ in range(2)]
        fast = chat.plain_frames(runs[0], "chatcmpl-1", "m", True)
        assert fast is not None
        await joined(fast)
        await joined(chat_general(runs[1], "m", True))
        return runs

    for run in asyncio.run(finished_runs()):
        assert run.done and run.finish_reason == "length"
        assert run.completion_tokens == len(TEXTS) + 1
        samples = run.metrics.registry.get_sample_value(
            "vllm:request_success_total", {"model_name": "m", "finished_reason": "length"}
        )
        assert samples == 1


def test_a_model_name_equal_to_the_splice_marker_takes_the_general_path() -> None:
    model = SPLICE  # only a whole string value can match: the marker's JSON has its quotes
    assert chat.plain_frames(run_of(script("", "stop")), "chatcmpl-1", model, False) is None
    assert completions.plain_frames(run_of(script("", "stop")), "cmpl-1", model, 7, False) is None

    async def served() -> AsyncIterator[str]:
        return chat.frames(
            [run_of(script("", "stop"))],
            "chatcmpl-1",
            model,
            chat.ToolMode("off"),
            HermesParser(),
            None,
            str,
            False,
            False,
        )

    async def both() -> tuple[str, str]:
        frames = await served()
        assert frames.ag_code.co_name == "event_frames"  # type: ignore[attr-defined]
        return await joined(frames), await joined(
            chat_general(run_of(script("", "stop")), model, False)
        )

    fast, general = asyncio.run(both())
    assert fast == general


def _chat_frames(runs: list[Run], mode: chat.ToolMode, top: int | None, continuous: bool) -> str:
    frames = chat.frames(runs, "chatcmpl-1", "m", mode, HermesParser(), top, str, True, continuous)
    name = frames.ag_code.co_name  # type: ignore[attr-defined]
    asyncio.run(frames.aclose())
    return name


def test_chat_takes_the_fast_path_only_for_one_plain_choice() -> None:
    off, auto = chat.ToolMode("off"), chat.ToolMode("auto", frozenset({"f"}))

    def runs(k: int) -> list[Run]:
        return [run_of(script("", "stop")) for _ in range(k)]

    assert _chat_frames(runs(1), off, None, False) == "single_choice_frames"
    assert _chat_frames(runs(2), off, None, False) == "event_frames"  # n > 1
    assert _chat_frames(runs(1), auto, None, False) == "event_frames"  # tools parsed
    assert _chat_frames(runs(1), off, 0, False) == "event_frames"  # logprobs
    assert _chat_frames(runs(1), off, None, True) == "event_frames"  # usage per chunk


def test_completions_take_the_fast_path_only_for_one_plain_choice() -> None:
    prompt = completions.Prompt([1, 2], "hi")

    def name(prompts: int, n: int, opts: completions.Options, continuous: bool) -> str:
        runs = [run_of(script("", "stop")) for _ in range(prompts * n)]
        frames = completions.frames(
            runs, "cmpl-1", "m", [prompt] * prompts, n, opts, str, True, continuous
        )
        code = frames.ag_code.co_name  # type: ignore[attr-defined]
        asyncio.run(frames.aclose())
        return code

    plain = completions.Options(echo=False, logprobs=None, score_only=False)
    assert name(1, 1, plain, False) == "single_choice_frames"
    assert name(2, 1, plain, False) == "event_frames"  # a batch of prompts
    assert name(1, 2, plain, False) == "event_frames"  # n > 1
    assert name(1, 1, plain, True) == "event_frames"  # usage per chunk
    echo = completions.Options(echo=True, logprobs=None, score_only=False)
    assert name(1, 1, echo, False) == "event_frames"
    logprobs = completions.Options(echo=False, logprobs=0, score_only=False)
    assert name(1, 1, logprobs, False) == "event_frames"
