"""Continuous batching must not change answers: greedy outputs of requests that share a batch
(joining and leaving it at different steps) equal the same requests run one at a time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.llm_server import RunningServer

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
        response = http.post("/v1/completions", json={**request, "temperature": 0,
                                                     "ignore_eos": True})
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
        body = {"prompt": name, "max_tokens": 200, "temperature": 0, "ignore_eos": True,
                "stream": True}
        with tiny_server.http() as http, http.stream("POST", "/v1/completions",
                                                     json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    seen.append(name)
        seen.append(f"{name}:end")

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(stream, ["first", "second"]))
    first_end = min(seen.index("first:end"), seen.index("second:end"))
    assert {"first", "second"} <= set(seen[:first_end])
