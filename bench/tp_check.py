"""Tensor parallel against one GPU on the same random weights: greedy agreement and logit error.

Run once per size (each in its own process: a TP group lives as long as its process), then
compare:
    python bench/tp_check.py run --size 1 --out /tmp/tp1.pt
    python bench/tp_check.py run --size 2 --out /tmp/tp2.pt
    python bench/tp_check.py compare /tmp/tp1.pt /tmp/tp2.pt --json tp_check.json

`run` serves the prompts through the real engine (build_backend, as `llmserve serve` does, with
LLMSERVE_* from the environment), greedy, ignore_eos, and records every step's logits as rank 0
sees them (the engine's pick is wrapped). `compare` reports, per prompt, how many leading tokens
agree, and the logit error over the steps where both runs had fed the same tokens."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch


def _prompts(count: int, length: int, vocab: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(1234)
    return [torch.randint(3, vocab, (length,), generator=gen).tolist() for _ in range(count)]


def run(args: argparse.Namespace) -> None:
    import dataclasses

    from llmserve.engine_api import SamplingParams
    from llmserve.server import build_backend
    from llmserve.settings import load_settings

    settings = dataclasses.replace(
        load_settings(env=None), tensor_parallel=args.size, max_batch=args.prompts
    )
    started = time.monotonic()
    backend = build_backend(settings)
    ready_s = time.monotonic() - started
    runner = backend.engine.runner
    local = getattr(runner, "local", runner)  # rank 0's own runner under tensor parallel
    steps: dict[str, list[torch.Tensor]] = {}
    pick = local._pick

    def recording_pick(seqs: list[Any], logits: torch.Tensor) -> Any:
        for seq, row in zip(seqs, logits, strict=True):
            steps.setdefault(seq.request_id, []).append(row.float().cpu())
        return pick(seqs, logits)

    local._pick = recording_pick
    prompts = _prompts(args.prompts, args.prompt_tokens, backend.vocab_size)
    params = SamplingParams(max_tokens=args.tokens, temperature=0.0, ignore_eos=True)

    async def generate() -> list[tuple[str, list[int]]]:
        async def one(prompt: list[int]) -> tuple[str, list[int]]:
            stream = backend.engine.submit(prompt, params)
            return stream.request_id, [t async for d in stream for t in d.token_ids]

        return list(await asyncio.gather(*map(one, prompts)))

    started = time.monotonic()
    results = asyncio.run(generate())
    gen_s = time.monotonic() - started
    backend.engine.stop()
    torch.save(
        {
            "size": args.size,
            "ready_s": ready_s,
            "generate_s": gen_s,
            "tokens": [tokens for _id, tokens in results],
            "logits": [torch.stack(steps[request_id]) for request_id, _t in results],
        },
        args.out,
    )
    print(
        f"size {args.size}: ready in {ready_s:.1f} s, {len(prompts)} x {args.tokens} tokens "
        f"in {gen_s:.1f} s"
    )


def compare(args: argparse.Namespace) -> None:
    one, other = torch.load(args.one), torch.load(args.other)
    rows = []
    for n, (a, b) in enumerate(zip(one["tokens"], other["tokens"], strict=True)):
        agree = next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), len(a))
        # Step i's logits follow the same inputs while every earlier token agreed.
        same_input = min(agree + 1, len(a))
        la, lb = one["logits"][n][:same_input], other["logits"][n][:same_input]
        err = (la - lb).abs()
        rows.append(
            {
                "prompt": n,
                "tokens": len(a),
                "leading_tokens_equal": agree,
                "max_abs_logit_error": float(err.max()),
                "mean_abs_logit_error": float(err.mean()),
                "max_abs_logit": float(la.abs().max()),
                "first_step_max_abs_logit_error": float(err[0].max()),
            }
        )
    summary = {
        "sizes": [one["size"], other["size"]],
        "ready_s": [one["ready_s"], other["ready_s"]],
        "generate_s": [one["generate_s"], other["generate_s"]],
        "all_tokens_equal": all(r["leading_tokens_equal"] == r["tokens"] for r in rows),
        "prompts": rows,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--size", type=int, required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--prompts", type=int, default=4)
    r.add_argument("--prompt-tokens", type=int, default=128)
    r.add_argument("--tokens", type=int, default=256)
    c = sub.add_parser("compare")
    c.add_argument("one")
    c.add_argument("other")
    c.add_argument("--json")
    args = parser.parse_args()
    run(args) if args.command == "run" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
