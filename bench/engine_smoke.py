"""Smoke test and rough speed of llmserve's continuous-batching engine on a GPU.

    python bench/engine_smoke.py engine --tokenizer DIR --out engine.json
    python bench/engine_smoke.py served --tokenizer DIR --out served.json

`engine` drives the engine in-process (no HTTP) on random:chatglm2-6b (bf16 on CUDA): a greedy
batched-vs-alone check, then output tokens/s for 1, 64 and 256 concurrent requests of 128 prompt
and 256 output tokens. `served` starts `llmserve serve` on the same model, measures the same
loads over HTTP with `llmserve bench`, then sends SIGTERM and records the exit status.
The numbers are rough: one run, one machine, random weights forced to full length."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "image"))

LOADS = [(1, 2), (64, 64), (256, 256)]  # (concurrency, requests)
PROMPT_TOKENS, OUTPUT_TOKENS = 128, 256
READY_DEADLINE_S = 900  # a 6B random model plus one compilation took ~130 s on the H200


def save(out: Path, results: dict[str, object]) -> None:
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results), flush=True)


def engine_phase(args: argparse.Namespace) -> None:
    import torch
    from llmserve.engine import ContinuousBatchingEngine
    from llmserve.engine_api import SamplingParams
    from llmserve.models import load_model

    results: dict[str, object] = {"torch": torch.__version__, "preset": args.preset}
    if args.device == "cuda":
        results["gpu"] = torch.cuda.get_device_name(0)
    t0 = time.perf_counter()
    # Model, dtype (bf16 on CUDA) and tokenizer exactly as `llmserve serve` loads them.
    loaded = load_model(
        f"random:{args.preset}", args.device, "auto", tokenizer_source=str(args.tokenizer)
    )
    model, device = loaded.model, loaded.device
    # The engine as `llmserve serve` builds it by default on a GPU (LLMSERVE_COMPILE=auto): decode
    # steps from CUDA graphs, the one-row step compiled before capture.
    on_cuda = device.type == "cuda"
    engine = ContinuousBatchingEngine(
        model,
        loaded.tokenizer,
        max_model_len=8192,
        eos_token_ids=[2],
        max_batch=256,
        max_queue=1024,
        graph_max_batch=256 if on_cuda else 0,
        cuda_graphs=on_cuda,
        compile_step=on_cuda,
    )
    engine.start()
    results["build_and_warmup_s"] = round(time.perf_counter() - t0, 1)
    save(args.out, results)
    generator = torch.Generator().manual_seed(1)

    def prompt() -> list[int]:
        high = min(60000, model.config.vocab_size)
        return torch.randint(10, high, (PROMPT_TOKENS,), generator=generator).tolist()

    async def one(ids: list[int], params: SamplingParams) -> tuple[list[str], int, float | None]:
        start = time.perf_counter()
        first = None
        texts, tokens = [], 0
        async for delta in engine.submit(ids, params):
            if first is None and delta.completion_tokens:
                first = time.perf_counter() - start
            texts.append(delta.text)
            tokens = delta.completion_tokens
        return texts, tokens, first

    async def check_batching() -> bool:
        params = SamplingParams(max_tokens=32, temperature=0.0, ignore_eos=True)
        prompts = [prompt()[: 20 + 17 * i] for i in range(6)]
        alone = [await one(p, params) for p in prompts]
        together = await asyncio.gather(*(one(p, params) for p in prompts))
        return ["".join(a[0]) for a in alone] == ["".join(t[0]) for t in together]

    results["greedy_batched_equals_alone"] = asyncio.run(check_batching())
    save(args.out, results)

    async def load(concurrency: int, requests: int) -> dict[str, float]:
        params = SamplingParams(max_tokens=args.output_tokens, temperature=0.0, ignore_eos=True)
        prompts = [prompt() for _ in range(requests)]
        semaphore = asyncio.Semaphore(concurrency)

        async def limited(ids: list[int]) -> tuple[list[str], int, float | None]:
            async with semaphore:
                return await one(ids, params)

        start = time.perf_counter()
        done = await asyncio.gather(*(limited(p) for p in prompts))
        wall = time.perf_counter() - start
        tokens = sum(d[1] for d in done)
        ttfts = sorted(d[2] for d in done if d[2] is not None)
        return {
            "output_tok_s": round(tokens / wall, 1),
            "wall_s": round(wall, 2),
            "tokens": tokens,
            "ttft_p50_s": round(ttfts[len(ttfts) // 2], 3),
        }

    for concurrency, requests in LOADS:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        measured = asyncio.run(load(concurrency, requests))
        if device.type == "cuda":
            measured["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        results[f"engine_c{concurrency}"] = measured
        save(args.out, results)
    engine.stop()


def served_phase(args: argparse.Namespace) -> None:
    import httpx

    port = "7861"
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "LLMSERVE_MODEL": f"random:{args.preset}",
        "LLMSERVE_TOKENIZER": str(args.tokenizer),
        "LLMSERVE_PORT": port,
        "LLMSERVE_MAX_BATCH": "256",
        "LLMSERVE_MAX_QUEUE": "1024",
        "LLMSERVE_LOG_LEVEL": "warning",
        "LLMSERVE_DEVICE": args.device,
        "PYTHONPATH": os.pathsep.join([str(REPO / "image"), os.environ.get("PYTHONPATH", "")]),
    }
    results: dict[str, object] = {}
    t0 = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "llmserve", "serve"], env=env)
    try:
        deadline = time.monotonic() + READY_DEADLINE_S
        while True:
            if server.poll() is not None:
                raise SystemExit(f"server exited with {server.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit(f"server not ready after {READY_DEADLINE_S} s")
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        results["server_ready_s"] = round(time.perf_counter() - t0, 1)
        save(args.out, results)
        for concurrency, requests in LOADS:
            report = args.out.with_name(f"served_c{concurrency}.json")
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "llmserve",
                    "bench",
                    "--url",
                    url,
                    "--endpoint",
                    "completions",
                    "--num-requests",
                    str(requests),
                    "--concurrency",
                    str(concurrency),
                    "--prompt-tokens",
                    str(PROMPT_TOKENS),
                    "--output-tokens",
                    str(args.output_tokens),
                    "--ignore-eos",
                    "--json",
                    str(report),
                ],
                env=env,
                check=False,
            )
            if report.exists():
                results[f"served_c{concurrency}"] = json.loads(report.read_text())
            save(args.out, results)
        metrics = httpx.get(url + "/metrics").text
        results["metrics_sample"] = [
            line
            for line in metrics.splitlines()
            if line.startswith(("llmserve_requests_total", "vllm:generation_tokens_total"))
        ]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            results["sigterm_exit_code"] = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            results["sigterm_exit_code"] = "did not exit in 60 s"
        save(args.out, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["engine", "served"])
    parser.add_argument(
        "--tokenizer",
        type=Path,
        required=True,
        help="a Hugging Face tokenizer directory (e.g. the converted SmolLM2 one)",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="chatglm2-6b", help="random:<preset> to run")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--output-tokens", type=int, default=OUTPUT_TOKENS)
    args = parser.parse_args()
    {"engine": engine_phase, "served": served_phase}[args.phase](args)


if __name__ == "__main__":
    main()
