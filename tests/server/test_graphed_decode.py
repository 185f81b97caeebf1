"""The fixed-buffer decode path (what CUDA graphs replay on a GPU) computes what the eager path
computes: same greedy tokens, with requests joining and leaving mid-flight and the batch growing
past the graphed size and shrinking back. On the CPU it runs the same code without capture."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch
import torch._dynamo
from llmserve.engine import ContinuousBatchingEngine
from llmserve.engine_api import SamplingParams
from llmserve.graphs import GraphedDecoder, _bucket
from llmserve.kvcache import BatchCache
from llmserve.models import LoadedModel, load_model
from transformers import DynamicCache, GlmConfig, GlmForCausalLM

from tests.server.conftest import EngineFactory

PROMPTS = [
    [1, 504, 3458, 314, 260, 1345],
    [1, 22, 7],
    [1, 900, 901, 902, 903, 904, 905, 906, 907, 908, 909, 910],
    [1, 5],
    [1, 77, 78, 79, 80],
    [1, 4000, 4001, 4002, 4003, 4004, 4005, 4006],
]
# Different lengths, so requests leave at different steps and the batch's rows move.
MAX_TOKENS = [12, 30, 7, 21, 16, 9]


def engine(
    engine_factory: EngineFactory, graph_max_batch: int, **kwargs: Any
) -> ContinuousBatchingEngine:
    """Batch 8, no EOS; graph_max_batch 0 is the eager path, CUDA graphs stay off on the CPU."""
    return engine_factory(max_batch=8, graph_max_batch=graph_max_batch, cuda_graphs=False, **kwargs)


async def answer(built: ContinuousBatchingEngine, prompt: list[int], tokens: int) -> str:
    """The greedy text of exactly `tokens` tokens."""
    params = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)
    return "".join([d.text async for d in built.submit(prompt, params)])


async def generate(built: ContinuousBatchingEngine, staggered: bool) -> list[str]:
    async def one(i: int) -> str:
        if staggered:  # join while others are mid-generation
            await asyncio.sleep(0.01 * i)
        return await answer(built, PROMPTS[i], MAX_TOKENS[i])

    return list(await asyncio.gather(*(one(i) for i in range(len(PROMPTS)))))


@pytest.mark.parametrize("graph_max_batch", [1, 2, 4, 8])
def test_fixed_buffers_give_the_eager_tokens(
    engine_factory: EngineFactory, graph_max_batch: int
) -> None:
    eager = engine(engine_factory, 0)
    fixed = engine(engine_factory, graph_max_batch)
    for staggered in (False, True):
        expected = asyncio.run(generate(eager, staggered))
        assert asyncio.run(generate(fixed, staggered)) == expected
    assert fixed.runner.graphed is not None and fixed.runner.graphed.buffer_bytes() > 0


def test_single_stream_uses_the_fixed_path(engine_factory: EngineFactory) -> None:
    built = engine(engine_factory, 4)
    calls: list[int] = []
    graphed = built.runner.graphed
    assert isinstance(graphed, GraphedDecoder)
    original = graphed._forward

    def counting(rows: int, length: int):
        calls.append(rows)
        return original(rows, length)

    graphed._forward = counting  # type: ignore[method-assign]
    asyncio.run(answer(built, PROMPTS[0], 10))
    # The first token comes from the prefill; the other nine from fixed-buffer steps of 1 row.
    assert calls == [1] * 9


def test_buckets() -> None:
    assert [_bucket(n, 1, 8) for n in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]
    assert [_bucket(n, 128, 4096) for n in (1, 128, 129, 5000)] == [128, 128, 256, 4096]


def test_fused_rms_norm_computes_the_same_logits() -> None:
    from llmserve.fusions import fuse_rms_norms

    model = load_model("random:tiny", "cpu", "float32").model
    ids = torch.tensor([PROMPTS[2]])
    with torch.inference_mode():
        before = model(input_ids=ids).logits
        assert fuse_rms_norms(model) > 0
        after = model(input_ids=ids).logits
    assert torch.allclose(before, after, atol=1e-5, rtol=1e-5)
    assert not torch.equal(before, torch.zeros_like(before))


def test_crossing_length_buckets_and_falling_back_to_eager(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long answers cross the 128-token bucket; with buffers capped at 160 tokens the longest
    # batch falls back to eager decoding mid-answer, and back when the long row leaves.
    import llmserve.model_runner as model_runner

    monkeypatch.setattr(model_runner, "GRAPH_MAX_LEN", 160)
    eager, fixed = engine(engine_factory, 0), engine(engine_factory, 4)

    async def answers(built: ContinuousBatchingEngine) -> list[str]:
        return list(
            await asyncio.gather(
                answer(built, PROMPTS[2], 200),
                answer(built, PROMPTS[0], 40),
                answer(built, PROMPTS[1], 150),
            )
        )

    assert fixed.runner.graphed is not None and fixed.runner.graphed.max_len == 160
    assert asyncio.run(answers(fixed)) == asyncio.run(answers(eager))


def test_compiled_single_row_compiles_once_for_every_length(engine_factory: EngineFactory) -> None:
    # Answers alone (compiled one-row steps) cross the 128-token length bucket, and batched
    # steps come between them; the compiled path gives the eager tokens and a recompile raises.
    # aot_eager traces what inductor would compile (guards included), without a C compiler.
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    no_recompiles = torch._dynamo.config.patch(error_on_recompile=True)
    eager = engine(engine_factory, 0)
    compiled = engine(engine_factory, 4, compile_step=True, compile_backend="aot_eager")

    async def answers(built: ContinuousBatchingEngine) -> list[str]:
        alone = [await answer(built, PROMPTS[1], 150), await answer(built, PROMPTS[0], 20)]
        together = await asyncio.gather(answer(built, PROMPTS[3], 30), answer(built, PROMPTS[4], 8))
        return alone + list(together)

    assert compiled.runner.graphed is not None and compiled.runner.graphed.compiled()
    with no_recompiles:
        assert asyncio.run(answers(compiled)) == asyncio.run(answers(eager))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_length_buckets_that_match_model_dimensions_share_one_compilation() -> None:
    # ChatGLM2's head_dim (128) and hidden size (4096) are also length buckets. With torch's
    # default duck sizing the length took those dimensions' symbol, and each such bucket
    # recompiled (minutes for a 6B model on the H200). The last bucket (the whole buffer, without
    # slack columns) was contiguous where the others are not: a stride guard recompiled it too.
    # aot_eager traces through AOT autograd as inductor does, so it sees the stride guards.
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    no_recompiles = torch._dynamo.config.patch(error_on_recompile=True)
    config = GlmConfig(
        vocab_size=1000,
        hidden_size=256,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        head_dim=128,
        partial_rotary_factor=0.5,
        max_position_embeddings=1024,
        pad_token_id=0,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = GlmForCausalLM(config).eval()
    decoder = GraphedDecoder(
        model,
        max_rows=1,
        max_len=512,
        pad_token_id=0,
        use_cuda_graphs=False,
        compile_step=True,
        compile_backend="aot_eager",
    )
    assert decoder._length_buckets() == [128, 256, 512]
    with torch.inference_mode(), no_recompiles:
        ids = torch.ones((1, 100), dtype=torch.long)
        cache = DynamicCache(config=config)
        model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
        batch = BatchCache()
        batch.append(cache, torch.ones_like(ids))
        for step in range(411):  # 101..511 columns: the buckets 128, 256 and 512
            decoder.decode(batch, [5], [100 + step])
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_a_step_that_fails_to_compile_is_captured_uncompiled(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a GPU without a C compiler for Triton meets: compiling raises inside the capture. The
    # decoder logs it, captures the plain step instead and keeps CUDA graphs on. Capture itself
    # is stood in for on the CPU by running the step once (what the warm-up run computes).
    def no_compiler(graph_module: Any, example_inputs: Any) -> Any:
        raise RuntimeError("Failed to find C compiler")

    decoder = GraphedDecoder(
        tiny.model,
        max_rows=2,
        max_len=256,
        pad_token_id=0,
        use_cuda_graphs=True,
        compile_step=True,
        compile_backend=no_compiler,
        fuse_norms=False,
    )

    class Replayed:
        def replay(self) -> None:
            pass

    monkeypatch.setattr(
        decoder, "_capture", lambda rows, length: (Replayed(), decoder._forward(rows, length))
    )
    ids = torch.tensor([PROMPTS[0]])
    with torch.inference_mode():
        reference, cache = (
            DynamicCache(config=tiny.model.config),
            DynamicCache(config=tiny.model.config),
        )
        for prefilled in (reference, cache):
            tiny.model(input_ids=ids, cache=prefilled, use_cache=True, logits_to_keep=1)
        expected = tiny.model(
            input_ids=torch.tensor([[7]]),
            cache=reference,
            use_cache=True,
            position_ids=torch.tensor([[len(PROMPTS[0])]]),
        ).logits[:, -1]
        batch = BatchCache()
        batch.append(cache, torch.ones_like(ids))
        assert decoder.compiled()
        logits = decoder.decode(batch, [7], [len(PROMPTS[0])])
    assert not decoder.compiled() and decoder.use_cuda_graphs
    assert torch.allclose(logits, expected, atol=1e-5)
