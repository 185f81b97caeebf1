"""Tensor parallel on the CPU with a world size of 2 (gloo): the sharded model computes TP=1's
logits, the engine's greedy tokens over joins, leaves and a chunked prefill are TP=1's, a dead
worker makes the server exit with the reason instead of hanging, and bad sizes are refused.

The ranks run in their own processes (tests/server/tp_ranks.py), as they do in the server."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from llmserve.engine_api import SamplingParams
from llmserve.presets import build_random_model
from llmserve.sequence import Sequence
from llmserve.settings import SettingsError, load_settings
from llmserve.tensor_parallel import check_heads, config_before_loading
from llmserve.tp_mirror import SequenceDecoder, SequenceEncoder
from transformers import GlmConfig

from tests.llm_server import IMAGE_DIR, REPO_ROOT, free_port, start_server
from tests.server import tp_ranks

# float32 on the CPU: a sharded matmul sums the same products in another order (two halves,
# then the all-reduce), so logits of magnitude ~20 differ in their last bits (measured: 1.4e-5).
LOGITS_ATOL = 1e-4
LOGITS_RTOL = 1e-5
HANG_GUARD_S = 240  # a scenario that takes longer is stuck: fail instead of waiting forever


def run_ranks(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSERVE_")}
    env.update(PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(IMAGE_DIR)]), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "tests.server.tp_ranks", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )


def test_sharded_logits_equal_one_rank_within_float32_tolerance(tmp_path: Path) -> None:
    out = tmp_path / "logits.pt"
    done = run_ranks("logits", str(out), str(free_port()))
    assert done.returncode == 0, done.stderr[-3000:]
    sharded = torch.load(out)
    for preset in tp_ranks.PRESETS:
        whole = tp_ranks.logits_of(build_random_model(preset, torch.device("cpu"), torch.float32))
        for got, want in zip(sharded[preset], whole, strict=True):
            torch.testing.assert_close(got, want, atol=LOGITS_ATOL, rtol=LOGITS_RTOL)
        # The decode step's logits depend on the cache each rank kept for its own heads.
        assert sharded[preset][1].shape == (2, 1, whole[1].shape[-1])


@pytest.fixture(scope="module")
def tp2_run() -> subprocess.CompletedProcess[str]:
    return run_ranks("engine-then-crash")


def test_engine_greedy_tokens_equal_one_rank_across_joins_and_leaves(
    tp2_run: subprocess.CompletedProcess[str],
) -> None:
    lines = tp2_run.stdout.strip().splitlines()
    assert lines, tp2_run.stderr[-3000:]
    tp2 = json.loads(lines[0])
    tp1 = tp_ranks.engine_tokens(1)
    assert [len(t) for t in tp1] == tp_ranks.MAX_TOKENS
    assert tp2 == tp1


def test_a_dead_worker_makes_the_server_exit_with_the_reason(
    tp2_run: subprocess.CompletedProcess[str],
) -> None:
    assert tp2_run.returncode == 1, (tp2_run.stdout, tp2_run.stderr[-3000:])
    assert '"answered"' not in tp2_run.stdout
    assert "tensor-parallel rank 1" in tp2_run.stderr
    assert "exited with code -9" in tp2_run.stderr


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]


def test_sigterm_drains_a_served_stream_then_the_worker_stops_and_the_server_exits_0(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path, "random:tiny", tensor_parallel="2", drain_seconds="120")
    try:
        (worker,) = _children(server.process.pid)
        body = {"prompt": "Tell me", "max_tokens": 40, "temperature": 0, "ignore_eos": True}
        with (
            server.http() as http,
            http.stream("POST", "/v1/completions", json={**body, "stream": True}) as reply,
        ):
            assert reply.status_code == 200, reply.read()
            lines = reply.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            server.process.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line.startswith("data: ")]
        assert first and rest[-1] == "data: [DONE]"
        assert '"finish_reason":"length"' in rest[-2].replace(" ", "")
        assert server.process.wait(timeout=HANG_GUARD_S) == 0
        assert not Path(f"/proc/{worker}").exists()  # stopped and reaped, not left behind
        assert "killing it" not in server.log()
    finally:
        server.stop()


def test_setting_allows_1_2_4_8_and_defaults_to_1() -> None:
    assert load_settings(env={}).tensor_parallel == 1
    assert load_settings(env={"LLMSERVE_TENSOR_PARALLEL": "4"}).tensor_parallel == 4
    for bad in ("3", "0", "two"):
        with pytest.raises(SettingsError, match=r"LLMSERVE_TENSOR_PARALLEL.*allowed: 1, 2, 4, 8"):
            load_settings(env={"LLMSERVE_TENSOR_PARALLEL": bad})


def test_sizes_that_split_a_head_are_refused_naming_the_sizes_that_fit() -> None:
    chatglm2_heads = GlmConfig(num_attention_heads=32, num_key_value_heads=2)
    check_heads(chatglm2_heads, 2)
    with pytest.raises(SettingsError, match=r"TENSOR_PARALLEL=4 .* 32 attention heads and 2 key"):
        check_heads(chatglm2_heads, 4)
    with pytest.raises(SettingsError, match=r"allowed for this model: 1, 2$"):
        check_heads(chatglm2_heads, 8)


def test_head_counts_are_read_before_the_weights_where_the_config_says_them(
    tmp_path: Path,
) -> None:
    preset = config_before_loading("random:chatglm2-6b")
    assert (preset.num_attention_heads, preset.num_key_value_heads) == (32, 2)
    build_random_model("tiny-llama", torch.device("cpu"), torch.float32).config.save_pretrained(
        tmp_path
    )
    assert config_before_loading(str(tmp_path)).num_key_value_heads == 2
    assert config_before_loading(None) is None  # the bundled GGUF: checked after loading
    assert config_before_loading("random:nonesuch") is None  # load_model names the presets


def _sequence(prompt: list[int]) -> Sequence:
    return Sequence("r1", prompt, SamplingParams(max_tokens=4), detok=object())  # type: ignore[arg-type]


def test_workers_see_plain_fields_only_what_changed_and_forget_finished_requests() -> None:
    encoder, decoder = SequenceEncoder(), SequenceDecoder(torch.device("cpu"))
    seq = _sequence([1, 2, 3])
    seq.chunk_cache = object()  # a rank's own device state never travels
    first = encoder.encode([seq])
    shadow = decoder.decode(first)[0]
    assert (shadow.prompt_ids, shadow.params, shadow.detok) == ([1, 2, 3], seq.params, None)
    assert shadow.chunk_cache is None and "chunk_cache" not in first[0].changed

    seq.output_ids += [7, 8]
    seq.position = 4
    second = encoder.encode(seq)
    assert second.grown == {"output_ids": [7, 8]} and set(second.changed) == {"position"}
    assert decoder.decode(second) is shadow and shadow.output_ids == [7, 8]
    assert shadow.position == 4 and shadow.last_token == 8

    seq.output_ids[:] = [9]  # not a growth (a preempted request starting over): sent whole
    assert encoder.encode(seq).changed["output_ids"] == [9]

    del seq, first, second
    gc.collect()
    decoder.forget(encoder.take_forgotten())
    assert decoder.shadows == {}
