"""`llmserve bench`: a `bench serve`-style load generator for any OpenAI-compatible server.

Streams N requests at a fixed concurrency and/or a Poisson request rate and reports what users
feel (time to first token, time per output token, inter-token latency) next to what operators pay
for (output tokens/s, requests/s), as a table and as JSON. Token counts come from the server's
`usage`, not from counting chunks, because a chunk may carry several tokens or none; the prompt is
built from words to roughly --prompt-tokens and the server's measured prompt length is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

from llmserve import cliargs

# Common English words: each is one token (with its leading space) in most BPE vocabularies, so N
# words make a prompt of about N tokens; the server's usage.prompt_tokens says the truth.
_WORD_LIST = (
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father "
    "power hour game line end member law car city community name president team minute idea "
    "kid body information back parent face others level office door health person art war "
    "history party result change morning reason research girl guy moment air teacher force"
)
WORDS = tuple(_WORD_LIST.split())
PERCENTILES = (50, 90, 99)
UNLIMITED = 1_000_000  # --concurrency when only --request-rate paces the load
ENDPOINTS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


@dataclass
class RequestResult:
    ok: bool
    start: float
    ttft: float | None = None
    latency: float | None = None
    chunk_times: list[float] = field(default_factory=list)  # arrival of each content chunk
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    usage_reported: bool = False
    error: str | None = None
    not_started: bool = False  # --max-duration passed before its turn came


@dataclass(frozen=True)
class BenchConfig:
    url: str
    model: str | None
    endpoint: str
    num_requests: int
    concurrency: int
    request_rate: float
    prompt_tokens: int
    output_tokens: int
    api_key: str | None
    ignore_eos: bool
    temperature: float
    seed: int
    warmup: int
    timeout: float
    max_duration: float | None
    json_out: str | None


def _positive_int(name: str, low: int, high: int):
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} {raw!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{name} {value} is out of range; allowed {low}..{high}"
            )
        return value

    return parse


def _rate(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--request-rate {raw!r} is not a number; allowed: > 0 requests/s or 'inf'"
        ) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"--request-rate {value} must be > 0 (or 'inf')")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = cliargs.ArgumentParser(
        prog="llmserve bench",
        description="Load-test an OpenAI-compatible server with streaming requests; report TTFT, "
        "TPOT, ITL percentiles, output tokens/s and requests/s.",
    )
    p.add_argument("--url", default="http://127.0.0.1:7861", help="server base URL")
    p.add_argument("--model", help="model id (default: the first one /v1/models lists)")
    p.add_argument(
        "--endpoint",
        choices=sorted(ENDPOINTS),
        default="chat",
        help="chat: /v1/chat/completions; completions: /v1/completions",
    )
    p.add_argument("--num-requests", type=_positive_int("--num-requests", 1, 1_000_000), default=64)
    p.add_argument(
        "--concurrency",
        type=_positive_int("--concurrency", 1, 100_000),
        default=None,
        help="most requests in flight at once (default: 1, or unlimited when "
        "--request-rate is given)",
    )
    p.add_argument(
        "--request-rate",
        type=_rate,
        default=float("inf"),
        help="mean requests started per second, Poisson arrivals (default: inf = "
        "as fast as --concurrency allows)",
    )
    p.add_argument(
        "--prompt-tokens", type=_positive_int("--prompt-tokens", 1, 1_000_000), default=128
    )
    p.add_argument(
        "--output-tokens",
        type=_positive_int("--output-tokens", 1, 1_000_000),
        default=128,
        help="max_tokens per request",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("LLMSERVE_API_KEY"),
        metavar="KEY",
        help="Bearer key (env LLMSERVE_API_KEY, which keeps it out of `ps`); a key "
        "starting with '-' works as `--api-key KEY` or `--api-key=KEY`",
    )
    p.add_argument(
        "--ignore-eos",
        action="store_true",
        help="ask for exactly --output-tokens tokens (ignore_eos + min_tokens)",
    )
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0, help="seeds prompts and arrival times")
    p.add_argument(
        "--warmup",
        type=_positive_int("--warmup", 0, 10_000),
        default=0,
        help="requests sent (at --concurrency) and discarded before measuring",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    p.add_argument(
        "--max-duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no new request after this long (in-flight ones finish); "
        "requests never started are reported as not_started",
    )
    p.add_argument("--json", dest="json_out", metavar="OUT", help="also write results here")
    return p


def parse_config(argv: Sequence[str] | None) -> BenchConfig:
    args = build_parser().parse_args(argv)
    if not args.url.startswith(("http://", "https://")):
        build_parser().error(f"--url {args.url!r} must start with http:// or https://")
    if args.max_duration is not None and not args.max_duration > 0:
        build_parser().error(f"--max-duration {args.max_duration} must be > 0 seconds")
    if not 0.0 <= args.temperature <= 2.0:
        build_parser().error(f"--temperature {args.temperature} is out of range; allowed 0..2")
    concurrency = args.concurrency or (UNLIMITED if args.request_rate != float("inf") else 1)
    return BenchConfig(
        url=args.url.rstrip("/"),
        model=args.model,
        endpoint=args.endpoint,
        num_requests=args.num_requests,
        concurrency=concurrency,
        request_rate=args.request_rate,
        prompt_tokens=args.prompt_tokens,
        output_tokens=args.output_tokens,
        api_key=args.api_key,
        ignore_eos=args.ignore_eos,
        temperature=args.temperature,
        seed=args.seed,
        warmup=args.warmup,
        timeout=args.timeout,
        max_duration=args.max_duration,
        json_out=args.json_out,
    )


def make_prompt(rng: random.Random, tokens: int) -> str:
    """Distinct prompts per request, so no prefix cache can make the benchmark look better."""
    return " ".join(rng.choice(WORDS) for _ in range(tokens))


def request_body(cfg: BenchConfig, model: str, prompt: str) -> dict:
    body: dict = {
        "model": model,
        "stream": True,
        "max_tokens": cfg.output_tokens,
        "temperature": cfg.temperature,
        "stream_options": {"include_usage": True},
    }
    if cfg.ignore_eos:
        body.update(ignore_eos=True, min_tokens=cfg.output_tokens)
    if cfg.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return body


def chunk_text(chunk: dict) -> str:
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    choice = choices[0]
    return (choice.get("delta") or {}).get("content") or choice.get("text") or ""


async def one_request(client: httpx.AsyncClient, cfg: BenchConfig, body: dict) -> RequestResult:
    result = RequestResult(ok=False, start=time.perf_counter())
    try:
        async with client.stream("POST", ENDPOINTS[cfg.endpoint], json=body) as resp:
            if resp.status_code != 200:
                text = (await resp.aread()).decode("utf-8", "replace")
                result.error = f"HTTP {resp.status_code}: {text[:200]}"
                return result
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    result.error = f"stream error: {json.dumps(chunk['error'])[:200]}"
                    return result
                now = time.perf_counter()
                if chunk_text(chunk):
                    if result.ttft is None:
                        result.ttft = now - result.start
                    result.chunk_times.append(now)
                usage = chunk.get("usage")
                if usage:
                    result.prompt_tokens = usage.get("prompt_tokens")
                    result.output_tokens = usage.get("completion_tokens")
                    result.usage_reported = True
    except (httpx.HTTPError, json.JSONDecodeError) as e:
        result.error = f"{type(e).__name__}: {e}"[:200]
        return result
    result.latency = time.perf_counter() - result.start
    if result.output_tokens is None:
        result.output_tokens = len(result.chunk_times)
    result.ok = result.ttft is not None
    if not result.ok:
        result.error = "stream ended without any content"
    return result


async def discover_model(client: httpx.AsyncClient) -> str:
    resp = await client.get("/v1/models")
    resp.raise_for_status()
    models = resp.json().get("data") or []
    if not models:
        raise RuntimeError("/v1/models lists no model; pass --model")
    return models[0]["id"]


async def template_overhead(client: httpx.AsyncClient, cfg: BenchConfig, model: str) -> int:
    """Tokens the server adds around a prompt (chat template, BOS), measured with a one-word
    request, so that --prompt-tokens is what the model really reads. 0 if usage is not reported."""
    probe = dataclasses.replace(cfg, output_tokens=1, ignore_eos=False)
    result = await one_request(client, probe, request_body(probe, model, WORDS[0]))
    if result.prompt_tokens is None:
        return 0
    overhead = max(0, result.prompt_tokens - 1)
    if overhead >= cfg.prompt_tokens:
        print(
            f"llmserve bench: the server adds {overhead} tokens to every prompt, more than "
            f"--prompt-tokens {cfg.prompt_tokens}; prompts will be 1 word",
            file=sys.stderr,
        )
    return overhead


async def run_load(cfg: BenchConfig) -> tuple[list[RequestResult], float, str]:
    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    limits = httpx.Limits(
        max_connections=min(cfg.concurrency, cfg.num_requests) + 4,
        max_keepalive_connections=min(cfg.concurrency, 1000),
    )
    async with httpx.AsyncClient(
        base_url=cfg.url,
        headers=headers,
        limits=limits,
        timeout=httpx.Timeout(cfg.timeout, connect=30.0),
    ) as client:
        model = cfg.model or await discover_model(client)
        words = cfg.prompt_tokens - await template_overhead(client, cfg, model)
        rng = random.Random(cfg.seed)
        prompts = [make_prompt(rng, max(1, words)) for _ in range(cfg.warmup + cfg.num_requests)]
        gate = asyncio.Semaphore(cfg.concurrency)
        deadline = float("inf")

        async def gated(prompt: str) -> RequestResult:
            async with gate:
                if time.perf_counter() > deadline:
                    return RequestResult(ok=False, start=time.perf_counter(), not_started=True)
                return await one_request(client, cfg, request_body(cfg, model, prompt))

        if cfg.warmup:
            await asyncio.gather(*(gated(p) for p in prompts[: cfg.warmup]))
        arrivals = random.Random(cfg.seed + 1)
        tasks = []
        t0 = time.perf_counter()
        if cfg.max_duration is not None:
            deadline = t0 + cfg.max_duration
        for prompt in prompts[cfg.warmup :]:
            tasks.append(asyncio.create_task(gated(prompt)))  # past the deadline: not_started
            if cfg.request_rate != float("inf") and time.perf_counter() <= deadline:
                await asyncio.sleep(arrivals.expovariate(cfg.request_rate))
        results = list(await asyncio.gather(*tasks))
        return results, time.perf_counter() - t0, model


def _stats_ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
    arr = np.asarray(values) * 1000.0
    return {
        "mean": round(float(arr.mean()), 2),
        **{f"p{p}": round(float(np.percentile(arr, p)), 2) for p in PERCENTILES},
    }


def summarize(cfg: BenchConfig, model: str, results: list[RequestResult], duration: float) -> dict:
    """vLLM benchmark_serving's definitions: TPOT excludes the first token; ITL is per chunk gap."""
    ok = [r for r in results if r.ok]
    not_started = sum(r.not_started for r in results)
    output_tokens = sum(r.output_tokens or 0 for r in ok)
    tpots = [
        (r.latency - r.ttft) / (r.output_tokens - 1)  # type: ignore[operator]
        for r in ok
        if r.output_tokens and r.output_tokens > 1
    ]
    itls = [b - a for r in ok for a, b in zip(r.chunk_times, r.chunk_times[1:], strict=False)]
    prompt_lens = [r.prompt_tokens for r in ok if r.prompt_tokens is not None]
    errors = Counter(r.error for r in results if not r.ok and not r.not_started)
    return {
        "config": {k: v for k, v in asdict(cfg).items() if k != "api_key"}
        | {
            "model": model,
            "request_rate": None if cfg.request_rate == float("inf") else cfg.request_rate,
            "concurrency": None if cfg.concurrency >= UNLIMITED else cfg.concurrency,
        },
        "completed": len(ok),
        "failed": len(results) - len(ok) - not_started,
        "not_started": not_started,
        "duration_s": round(duration, 3),
        "request_throughput_rps": round(len(ok) / duration, 3) if duration else None,
        "output_throughput_tok_s": round(output_tokens / duration, 1) if duration else None,
        "total_output_tokens": output_tokens,
        "mean_output_tokens": round(output_tokens / len(ok), 1) if ok else None,
        "mean_prompt_tokens": (
            round(sum(prompt_lens) / len(prompt_lens), 1) if prompt_lens else None
        ),
        "usage_reported": all(r.usage_reported for r in ok) if ok else False,
        "ttft_ms": _stats_ms([r.ttft for r in ok if r.ttft is not None]),
        "tpot_ms": _stats_ms(tpots),
        "itl_ms": _stats_ms(itls),
        "e2e_latency_ms": _stats_ms([r.latency for r in ok if r.latency is not None]),
        "errors": dict(errors.most_common(5)),
    }


def format_table(summary: dict) -> str:
    cfg = summary["config"]
    rate = "inf" if cfg["request_rate"] is None else f"{cfg['request_rate']:g}/s"
    conc = "unlimited" if cfg["concurrency"] is None else cfg["concurrency"]
    rows = [
        ("Model", cfg["model"]),
        ("Endpoint", f"{cfg['url']}{ENDPOINTS[cfg['endpoint']]}"),
        ("Concurrency / request rate", f"{conc} / {rate}"),
        (
            "Completed / failed / not started",
            f"{summary['completed']} / {summary['failed']} / {summary['not_started']}",
        ),
        ("Duration (s)", summary["duration_s"]),
        (
            "Prompt tokens asked / measured",
            f"{cfg['prompt_tokens']} / {summary['mean_prompt_tokens']}",
        ),
        ("Output tokens asked / mean", f"{cfg['output_tokens']} / {summary['mean_output_tokens']}"),
        ("Request throughput (req/s)", summary["request_throughput_rps"]),
        ("Output token throughput (tok/s)", summary["output_throughput_tok_s"]),
    ]
    lines = [f"{name:<34}{value}" for name, value in rows]
    lines.append(f"{'Latency (ms)':<34}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}")
    for label, key in (
        ("TTFT", "ttft_ms"),
        ("TPOT", "tpot_ms"),
        ("ITL", "itl_ms"),
        ("E2E latency", "e2e_latency_ms"),
    ):
        s = summary[key]
        cells = "".join(
            f"{'-' if s[k] is None else s[k]:>10}" for k in ("mean", "p50", "p90", "p99")
        )
        lines.append(f"{label:<34}{cells}")
    for error, count in summary["errors"].items():
        lines.append(f"error x{count}: {error}")
    width = max(len(line) for line in lines)
    return "\n".join(["=" * width, *lines, "=" * width])


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = parse_config(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        results, duration, model = asyncio.run(run_load(cfg))
    except (httpx.HTTPError, RuntimeError) as e:
        print(
            f"llmserve bench: cannot start against {cfg.url}: {type(e).__name__}: {e}",
            file=sys.stderr,
        )
        return 1
    summary = summarize(cfg, model, results, duration)
    print(format_table(summary))
    if cfg.json_out:
        Path(cfg.json_out).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return 0 if summary["failed"] == 0 else 3


if __name__ == "__main__":
    raise SystemExit(main())
