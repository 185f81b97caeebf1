"""Continuous batching must not change answers: greedy outputs of requests that share a batch
(joining and leaving it at different steps) equal the same requests run one at a time, over
HTTP and in the engine itself, with and without logprobs, penalties, logit bias and stop ids."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from llmserve.engine import ContinuousBatchingEngine
from llmserve.engine_api import Delta, SamplingParams

from tests.llm_server import RunningServer
from tests.server.conftest import EngineFactory

# Different prompt lengths (left padding in the batch) and different lengths of answer (rows
# leave at different steps); 7 requests on a 3-slot server also makes some wait and join late.
REQUESTS = [
    ({"prompt": "The quick brown fox", "max_tokens": 24}),
    ({"prompt": "A", "max_tokens": 5}),
    ({"prompt": "In the beginning there was a very long sentence that goes on", "max_tokens": 31}),
    ({"prompt": "Hello", "max_tokens": 12}),
    ({"prompt": "Numbers: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15", "max_tokens": 9}),
    ({"prompt": "Why is the sky blue?", "max_tokens": 27}),
    ({"prompt": "Tokyo", "max_tokens": 17}),
]


def complete(server: RunningServer, request: dict[str, object]) -> tuple[str, int]:
    with server.http() as http:
        response = http.post(
            "/v1/completions", json={**request, "temperature": 0, "ignore_eos": True}
        )
    response.raise_for_status()
    body = response.json()
    return body["choices"][0]["text"], body["usage"]["completion_tokens"]


def test_concurrent_greedy_outputs_equal_one_at_a_time(tiny_server: RunningServer) -> None:
    alone = [complete(tiny_server, r) for r in REQUESTS]
    with ThreadPoolExecutor(max_workers=len(REQUESTS)) as pool:
        together = list(pool.map(lambda r: complete(tiny_server, r), REQUESTS))
    assert [tokens for _, tokens in alone] == [r["max_tokens"] for r in REQUESTS]
    assert together == alone
    assert len({text for text, _ in alone}) == len(REQUESTS)  # the prompts really differ


def test_streams_interleave_while_sharing_the_batch(tiny_server: RunningServer) -> None:
    """Two long streams make progress together: each has emitted text before either ends."""
    seen: list[str] = []

    def stream(name: str) -> None:
        body = {
            "prompt": name,
            "max_tokens": 200,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
        }
        with (
            tiny_server.http() as http,
            http.stream("POST", "/v1/completions", json=body) as response,
        ):
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    seen.append(name)
        seen.append(f"{name}:end")

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(stream, ["first", "second"]))
    first_end = min(seen.index("first:end"), seen.index("second:end"))
    assert {"first", "second"} <= set(seen[:first_end])


# ----------------------------------------------------------------------------- in the engine
PROMPTS = [
    [1, 504, 3458, 314, 260, 1345],
    [1, 22, 7],
    [1, *range(900, 912)],
    [1, 5],
    [1, 77, 78, 79, 80],
    [1, *range(4000, 4008)],
    [1, 31, 32],
]
MAX_TOKENS = [12, 30, 7, 21, 16, 9, 25]  # rows leave at different steps


def mixed_params(with_extras: bool) -> list[SamplingParams]:
    """Greedy requests; with_extras adds logprobs, penalties, bias, stop ids per request."""
    extras: list[dict[str, object]] = [
        {"logprobs": 2},
        {"presence_penalty": 1.2, "frequency_penalty": 0.7},
        {"repetition_penalty": 1.5, "logprobs": 0},
        {"logit_bias": ((13, 25.0),), "frequency_penalty": 1.0},
        {"stop_token_ids": (13,), "min_tokens": 3},
        {"logprobs": 5, "presence_penalty": -0.5},
        {},
    ]
    return [
        SamplingParams(
            max_tokens=n, temperature=0.0, ignore_eos=True, **(extra if with_extras else {})
        )  # type: ignore[arg-type]
        for n, extra in zip(MAX_TOKENS, extras, strict=True)
    ]


async def answer(
    engine: ContinuousBatchingEngine, prompt: list[int], params: SamplingParams, delay: float = 0.0
) -> list[Delta]:
    await asyncio.sleep(delay)
    return [d async for d in engine.submit(prompt, params)]


def tokens_and_logprobs(deltas: list[Delta]) -> tuple[list[int], list[float]]:
    return (
        [t for d in deltas for t in d.token_ids],
        [lp.logprob for d in deltas for lp in d.logprobs],
    )


@pytest.mark.parametrize("with_extras", [False, True], ids=["plain", "logprobs-penalties"])
@pytest.mark.parametrize("graph_max_batch", [0, 4], ids=["eager", "fixed-buffers"])
def test_engine_batched_greedy_equals_one_at_a_time(
    engine_factory: EngineFactory, with_extras: bool, graph_max_batch: int
) -> None:
    engine = engine_factory([2], max_batch=4, graph_max_batch=graph_max_batch, cuda_graphs=False)
    params = mixed_params(with_extras)

    async def alone() -> list[list[Delta]]:
        return [await answer(engine, p, q) for p, q in zip(PROMPTS, params, strict=True)]

    async def together() -> list[list[Delta]]:  # 7 requests, 4 slots: some wait and join late
        return list(
            await asyncio.gather(
                *(
                    answer(engine, p, q, delay=0.005 * i)
                    for i, (p, q) in enumerate(zip(PROMPTS, params, strict=True))
                )
            )
        )

    expected = [tokens_and_logprobs(d) for d in asyncio.run(alone())]
    batched = [tokens_and_logprobs(d) for d in asyncio.run(together())]
    assert [t for t, _ in batched] == [t for t, _ in expected]
    for (_, got), (_, want) in zip(batched, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-4)
    if with_extras:  # the extras were in force: the plain run differs
        assert sum(len(lp) for _, lp in expected) > 0

        async def plain() -> list[list[Delta]]:
            return [
                await answer(engine, p, q)
                for p, q in zip(PROMPTS, mixed_params(False), strict=True)
            ]

        assert [tokens_and_logprobs(d)[0] for d in asyncio.run(plain())] != [t for t, _ in expected]
