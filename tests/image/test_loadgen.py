"""`llmserve bench` against the real server (random:tiny on CPU), plus its pure pieces."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from llmserve import loadgen

from tests.llm_server import RunningServer


def bench(server: RunningServer, tmp_path: Path, *extra: str) -> tuple[int, dict, str]:
    out = tmp_path / "bench.json"
    code = loadgen.main(
        ["--url", server.url, "--api-key", server.api_key, "--json", str(out), *extra]
    )
    return code, json.loads(out.read_text()) if out.exists() else {}, str(out)


def test_concurrency_run_reports_every_metric(
    llm_server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, summary, _ = bench(
        llm_server,
        tmp_path,
        "--num-requests",
        "6",
        "--concurrency",
        "3",
        "--prompt-tokens",
        "48",
        "--output-tokens",
        "12",
        "--ignore-eos",
    )
    assert code == 0, summary.get("errors")
    assert summary["completed"] == 6 and summary["failed"] == 0
    assert summary["usage_reported"] is True
    assert summary["total_output_tokens"] == 6 * 12  # ignore_eos + min_tokens force full length
    # the chat template's own tokens are measured and taken off, so the model reads ~48 tokens
    assert 48 <= summary["mean_prompt_tokens"] <= 50
    assert summary["output_throughput_tok_s"] > 0 and summary["request_throughput_rps"] > 0
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_latency_ms"):
        stats = summary[key]
        assert 0 < stats["p50"] <= stats["p90"] <= stats["p99"], (key, stats)
    assert summary["ttft_ms"]["p50"] <= summary["e2e_latency_ms"]["p50"]
    table = capsys.readouterr().out
    for label in ("TTFT", "TPOT", "ITL", "Output token throughput", "Request throughput"):
        assert label in table


def test_poisson_rate_on_completions_endpoint(llm_server: RunningServer, tmp_path: Path) -> None:
    code, summary, _ = bench(
        llm_server,
        tmp_path,
        "--num-requests",
        "4",
        "--request-rate",
        "20",
        "--endpoint",
        "completions",
        "--prompt-tokens",
        "8",
        "--output-tokens",
        "5",
        "--ignore-eos",
        "--seed",
        "7",
    )
    assert code == 0, summary.get("errors")
    assert summary["config"]["concurrency"] is None and summary["config"]["request_rate"] == 20
    assert summary["total_output_tokens"] == 4 * 5


def test_wrong_key_counts_failures_and_exits_nonzero(
    llm_server: RunningServer, tmp_path: Path
) -> None:
    out = tmp_path / "bad.json"
    code = loadgen.main(
        [
            "--url",
            llm_server.url,
            "--api-key",
            "wrong",
            "--model",
            "any",
            "--num-requests",
            "2",
            "--output-tokens",
            "2",
            "--json",
            str(out),
        ]
    )
    summary = json.loads(out.read_text())
    assert code == 3
    assert summary["failed"] == 2 and summary["completed"] == 0
    assert any("HTTP 401" in e for e in summary["errors"])


def test_unreachable_server_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert loadgen.main(["--url", "http://127.0.0.1:9", "--num-requests", "1"]) == 1
    assert "cannot start against http://127.0.0.1:9" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--num-requests", "0"], ["--num-requests", "0", "1..1000000"]),
        (["--request-rate", "-1"], ["--request-rate", "-1"]),
        (["--url", "localhost:7861"], ["--url", "localhost:7861"]),
        (["--endpoint", "embeddings"], ["--endpoint", "embeddings", "chat"]),
    ],
)
def test_bad_arguments_name_the_flag(
    args: list[str], words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert loadgen.main(args) == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err


def test_prompts_are_distinct_and_sized() -> None:
    rng = random.Random(1)
    a, b = loadgen.make_prompt(rng, 50), loadgen.make_prompt(rng, 50)
    assert a != b
    assert len(a.split()) == len(b.split()) == 50


def test_summary_percentiles_follow_the_samples() -> None:
    cfg = loadgen.parse_config(["--num-requests", "3", "--output-tokens", "4"])
    results = []
    for i, ttft in enumerate((0.1, 0.2, 0.3)):
        start = 10.0 * i
        times = [start + ttft + 0.05 * k for k in range(4)]
        results.append(
            loadgen.RequestResult(
                ok=True,
                start=start,
                ttft=ttft,
                latency=ttft + 0.15,
                chunk_times=times,
                prompt_tokens=10 + i,
                output_tokens=4,
                usage_reported=True,
            )
        )
    results.append(loadgen.RequestResult(ok=False, start=0.0, error="HTTP 429: busy"))
    summary = loadgen.summarize(cfg, "m", results, duration=2.0)
    assert summary["completed"] == 3 and summary["failed"] == 1
    assert summary["errors"] == {"HTTP 429: busy": 1}
    assert summary["ttft_ms"]["p50"] == pytest.approx(200.0)
    assert summary["tpot_ms"]["mean"] == pytest.approx(50.0)  # 0.15 s over 3 tokens after first
    assert summary["itl_ms"]["p99"] == pytest.approx(50.0)
    assert summary["output_throughput_tok_s"] == pytest.approx(6.0)  # 12 tokens / 2 s
    assert summary["mean_prompt_tokens"] == pytest.approx(11.0)


def test_max_duration_stops_starting_requests(llm_server: RunningServer, tmp_path: Path) -> None:
    # One request of 200 tokens on CPU outlasts 50 ms many times over, so the queue behind it
    # is never started; everything is accounted for and nothing counts as failed.
    code, summary, _ = bench(
        llm_server,
        tmp_path,
        "--num-requests",
        "10",
        "--concurrency",
        "1",
        "--prompt-tokens",
        "8",
        "--output-tokens",
        "200",
        "--ignore-eos",
        "--max-duration",
        "0.05",
    )
    assert code == 0, summary.get("errors")
    assert summary["completed"] >= 1 and summary["failed"] == 0
    assert summary["not_started"] >= 1
    assert summary["completed"] + summary["not_started"] == 10


@pytest.mark.parametrize("form", ["separate", "equals", "abbreviated"])
def test_key_starting_with_a_dash_reaches_the_server(
    llm_server: RunningServer, tmp_path: Path, form: str
) -> None:
    key = llm_server.api_key
    assert key is not None and key.startswith("-")  # the fixture makes it so, every run
    words = {
        "separate": ["--api-key", key],
        "equals": [f"--api-key={key}"],
        "abbreviated": ["--api", key],
    }[form]
    out = tmp_path / "dash.json"
    code = loadgen.main(
        [
            "--url",
            llm_server.url,
            *words,
            "--num-requests",
            "1",
            "--output-tokens",
            "2",
            "--json",
            str(out),
        ]
    )
    summary = json.loads(out.read_text())
    assert code == 0, summary.get("errors")
    assert summary["completed"] == 1
