"""What constrained decoding costs on the CPU, in-process (no HTTP), on a random-weight model.

Scenarios, each a batch of --batch requests of --tokens greedy tokens (ignore_eos) run to the
end, repeated --repeats times (the median is reported):

- plain: no request constrained (the baseline every other scenario is compared with);
- all-json: every request constrained by a JSON schema;
- one-json: one request constrained, the others plain: tokens/s of the plain ones;
- extras: plain greedy rows asking for logprobs and penalties (what those features cost).

Also a sampling-only microbenchmark (`pick_next_tokens` on random logits, no model) for a
batch of plain greedy / top-p rows with and without one grammar row.

`--baseline-image DIR` (an older tree's image/, e.g. from `git archive 345d30e image`) also
times that tree's pick_next_tokens on the same plain rows, beside today's.

`--only plain` runs just the plain scenario with nothing but max_tokens/temperature/ignore_eos,
so the same command can be pointed (PYTHONPATH) at an older engine to compare the baseline.

    PYTHONPATH=image .venv/bin/python bench/structured_cost.py --model random:tiny
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

# A schema whose values the model has to write (an open string, an array, numbers): the mask
# is computed at every token, not only on the few forced ones.
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "score": {"type": "number"},
        "ok": {"type": "boolean"},
    },
    "required": ["name", "tags", "score", "ok"],
}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="random:tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["plain"], default=None)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--baseline-image", default=None)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (with CUDA graphs)")
    parser.add_argument("--tokenizer", default=None, help="as LLMSERVE_TOKENIZER")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: steadier figures on a shared machine)",
    )
    parser.add_argument("--dtype", default="float32")
    parser.add_argument(
        "--prompt-tokens",
        type=int,
        default=0,
        help="random prompts of this many tokens instead of short text ones",
    )
    return parser.parse_args()


async def _one(engine: Any, prompt: list[int], params: Any) -> tuple[int, float]:
    count = 0
    async for delta in engine.submit(prompt, params):
        count = delta.completion_tokens
    return count, time.perf_counter()


def run_batch(engine: Any, prompts: list[list[int]], params: list[Any]) -> list[tuple[int, float]]:
    async def go() -> list[tuple[int, float]]:
        return list(
            await asyncio.gather(
                *(_one(engine, p, q) for p, q in zip(prompts, params, strict=True))
            )
        )

    return asyncio.run(go())


def scenario(
    engine: Any, prompts: list[list[int]], params: list[Any], rows: list[int], repeats: int
) -> dict[str, float]:
    """Median tokens/s over `repeats` runs, counting the tokens of `rows` up to the moment the
    last of them finished."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        results = run_batch(engine, prompts, params)
        tokens = sum(results[i][0] for i in rows)
        end = max(results[i][1] for i in rows)
        rates.append(tokens / (end - start))
    return {"tok_s": statistics.median(rates), "min": min(rates), "max": max(rates)}


def main() -> int:
    args = parse()
    import torch
    from llmserve.engine import ContinuousBatchingEngine
    from llmserve.engine_api import SamplingParams
    from llmserve.models import load_model

    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, args.device, args.dtype, tokenizer_source=args.tokenizer)
    cuda = args.device == "cuda"
    engine = ContinuousBatchingEngine(
        loaded.model,
        loaded.tokenizer,
        max_model_len=min(loaded.max_model_len, 1024),
        eos_token_ids=loaded.eos_token_ids,
        max_batch=args.batch,
        graph_max_batch=args.batch if cuda else 0,
        cuda_graphs=cuda,
    )
    engine.start()
    if args.prompt_tokens:
        generator = torch.Generator().manual_seed(0)
        prompts = [
            torch.randint(100, 20000, (args.prompt_tokens,), generator=generator).tolist()
            for _ in range(args.batch)
        ]
    else:
        prompts = [
            loaded.tokenizer.encode(f"Request {i}: describe item {i} as JSON.")
            for i in range(args.batch)
        ]
    plain = SamplingParams(max_tokens=args.tokens, temperature=0.0, ignore_eos=True)
    results: dict[str, Any] = {
        "model": args.model,
        "device": args.device,
        "dtype": args.dtype,
        "batch": args.batch,
        "tokens": args.tokens,
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    everyone = list(range(args.batch))
    run_batch(engine, prompts, [plain] * args.batch)  # warm-up
    results["plain"] = scenario(engine, prompts, [plain] * args.batch, everyone, args.repeats)
    if args.only != "plain":
        from llmserve.engine_api import StructuredOutput

        structured = StructuredOutput("json_schema", json.dumps(SCHEMA))
        constrained = SamplingParams(
            max_tokens=args.tokens, temperature=0.0, ignore_eos=True, structured=structured
        )
        run_batch(engine, prompts[:1], [constrained])  # converts the tokenizer once
        results["all_json"] = scenario(
            engine, prompts, [constrained] * args.batch, everyone, args.repeats
        )
        mixed = [constrained] + [plain] * (args.batch - 1)
        results["one_json_plain_rows"] = scenario(
            engine, prompts, mixed, everyone[1:], args.repeats
        )
        results["plain_rows_without_it"] = scenario(
            engine, prompts, [plain] * args.batch, everyone[1:], args.repeats
        )
        extras = SamplingParams(
            max_tokens=args.tokens,
            temperature=0.0,
            ignore_eos=True,
            logprobs=5,
            presence_penalty=0.5,
            frequency_penalty=0.5,
            repetition_penalty=1.1,
        )
        results["extras"] = scenario(engine, prompts, [extras] * args.batch, everyone, args.repeats)
        results["sampling_us"] = sampling_micro(loaded, args.batch, structured)
        if args.baseline_image:
            results["sampling_us_baseline"] = baseline_micro(
                loaded, args.batch, args.baseline_image
            )
    engine.stop()
    json.dump(results, sys.stdout, indent=2)
    print()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
    return 0


def sampling_micro(loaded: Any, batch: int, structured: Any, steps: int = 200) -> dict[str, float]:
    """Microseconds per pick_next_tokens call on [batch, vocab] logits (median of `steps`)."""
    import torch
    from llmserve.engine_api import SamplingParams
    from llmserve.logits import LogitsContext
    from llmserve.sampling import PlainRow, pick_next_tokens
    from llmserve.structured import GrammarCompiler

    vocab = int(loaded.model.get_output_embeddings().weight.shape[0])
    compiler = GrammarCompiler(
        loaded.tokenizer, vocab_size=vocab, eos_token_ids=loaded.eos_token_ids
    )
    ctx = LogitsContext(loaded.eos_token_ids, compiler)
    logits = torch.randn(batch, vocab, device=loaded.device)
    greedy = SamplingParams(max_tokens=10**6, temperature=0.0)
    top_p = SamplingParams(max_tokens=10**6, temperature=0.8, top_p=0.9)

    def timed(rows: list[PlainRow], advance: bool = False) -> float:
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            choices = pick_next_tokens(logits.clone(), rows, ctx)
            _sync(logits)
            times.append(time.perf_counter() - start)
            if advance:  # keep the grammar moving, as the engine does
                for row, choice in zip(rows, choices, strict=True):
                    if row.grammar is not None:
                        row.grammar.accept(choice.token)
                        if row.grammar.done():
                            row.grammar = compiler.compile(structured)
        return statistics.median(times) * 1e6

    out = {
        "greedy": timed([PlainRow(greedy) for _ in range(batch)]),
        "top_p": timed([PlainRow(top_p) for _ in range(batch)]),
    }
    mixed = [PlainRow(greedy) for _ in range(batch - 1)]
    mixed.append(PlainRow(greedy, grammar=compiler.compile(structured)))
    out["greedy_plus_one_grammar"] = timed(mixed, advance=True)
    return out


def _sync(tensor: Any) -> None:
    import torch

    if tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)


def baseline_micro(loaded: Any, batch: int, image: str, rounds: int = 7) -> dict[str, Any]:
    """The older tree's pick_next_tokens(logits, params, generators, block_eos, eos) against
    today's on the same plain rows, in interleaved rounds (median microseconds per call): the
    before/after of the plain path."""
    import importlib.util

    import torch
    from llmserve.engine_api import SamplingParams
    from llmserve.logits import LogitsContext
    from llmserve.sampling import PlainRow, pick_next_tokens

    spec = importlib.util.spec_from_file_location(
        "baseline_sampling", f"{image}/llmserve/sampling.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    vocab = int(loaded.model.get_output_embeddings().weight.shape[0])
    logits = torch.randn(batch, vocab, device=loaded.device)
    ctx = LogitsContext(loaded.eos_token_ids)
    eos = loaded.eos_token_ids
    out: dict[str, Any] = {}
    for name, params, steps in (
        ("greedy", SamplingParams(max_tokens=10**6, temperature=0.0), 40),
        ("top_p", SamplingParams(max_tokens=10**6, temperature=0.8, top_p=0.9), 5),
    ):
        rows = [PlainRow(params) for _ in range(batch)]

        def before(rows: list[PlainRow] = rows) -> None:  # as the old engine called it
            module.pick_next_tokens(
                logits.clone(),
                [r.params for r in rows],
                [r.generator for r in rows],
                [len(r.output_ids) < r.params.min_tokens for r in rows],
                eos,
            )

        def after(rows: list[PlainRow] = rows) -> None:
            pick_next_tokens(logits.clone(), rows, ctx)

        medians: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(rounds):
            for label, call in (("before", before), ("after", after)):
                times = []
                for _ in range(steps):
                    start = time.perf_counter()
                    call()
                    _sync(logits)
                    times.append(time.perf_counter() - start)
                medians[label].append(statistics.median(times) * 1e6)
        out[name] = {k: statistics.median(v) for k, v in medians.items()}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
