"""The paged KV cache as the server runs it: LLMSERVE_KV_CACHE and its sizing settings are parsed
and checked with named errors, and a server started with LLMSERVE_KV_CACHE=paged answers
concurrent requests as the padded one does, reporting real block use and prefix-cache hits in
/metrics under vLLM's names."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from llmserve.settings import SettingsError, load_settings

from tests.llm_server import RunningServer, start_server
from tests.server.test_batching import REQUESTS, complete


def test_kv_cache_settings_default_and_parse() -> None:
    defaults = load_settings(env={})
    assert (defaults.kv_cache, defaults.kv_block_size, defaults.kv_cache_tokens) == ("auto", 16, 0)
    assert defaults.gpu_memory_utilization == 0.9
    settings = load_settings(
        env={
            "LLMSERVE_KV_CACHE": "Paged",
            "LLMSERVE_KV_BLOCK_SIZE": "32",
            "LLMSERVE_KV_CACHE_TOKENS": "65536",
            "LLMSERVE_GPU_MEMORY_UTILIZATION": "0.8",
        }
    )
    assert (settings.kv_cache, settings.kv_block_size, settings.kv_cache_tokens) == (
        "paged",
        32,
        65536,
    )
    assert settings.gpu_memory_utilization == 0.8


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"LLMSERVE_KV_CACHE": "vllm"}, ["LLMSERVE_KV_CACHE", "'vllm'", "auto, padded, paged"]),
        ({"LLMSERVE_KV_BLOCK_SIZE": "0"}, ["LLMSERVE_KV_BLOCK_SIZE", "0", "1..1024"]),
        ({"LLMSERVE_KV_CACHE_TOKENS": "lots"}, ["LLMSERVE_KV_CACHE_TOKENS", "'lots'", "integers"]),
        ({"LLMSERVE_GPU_MEMORY_UTILIZATION": "1.5"}, ["LLMSERVE_GPU_MEMORY_UTILIZATION", "1.5"]),
    ],
)
def test_bad_kv_cache_settings_are_named(env: dict[str, str], needles: list[str]) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env=env)
    for needle in needles:
        assert needle in str(err.value)


@pytest.fixture(scope="module")
def paged_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """As tiny_server (3 slots, 512-token context), over a paged cache of 4-token blocks."""
    server = start_server(
        tmp_path_factory.mktemp("paged"),
        "random:tiny",
        max_batch="3",
        max_queue="64",
        max_model_len="512",
        kv_cache="paged",
        kv_block_size="4",
    )
    yield server
    server.stop()


def test_a_paged_server_answers_as_the_padded_one_and_reports_blocks_and_hits(
    paged_server: RunningServer, tiny_server: RunningServer
) -> None:
    with ThreadPoolExecutor(max_workers=len(REQUESTS)) as pool:
        paged = list(pool.map(lambda r: complete(paged_server, r), REQUESTS))
        padded = list(pool.map(lambda r: complete(tiny_server, r), REQUESTS))
    assert paged == padded
    label = '{model_name="random-tiny"}'
    before = paged_server.metrics()
    assert before[f"vllm:kv_cache_usage_perc{label}"] == 0.0  # every block is back
    queries = before[f"vllm:prefix_cache_queries_total{label}"]
    hits = before[f"vllm:prefix_cache_hits_total{label}"]
    assert queries > 0
    again = complete(paged_server, REQUESTS[2])  # its prompt's full blocks are cached now
    after = paged_server.metrics()
    assert again == paged[2]
    assert after[f"vllm:prefix_cache_hits_total{label}"] > hits
    assert after[f"vllm:prefix_cache_queries_total{label}"] > queries
    assert f"vllm:num_preemptions_total{label}" in after
