"""Every SamplingParams field, per row: the processors against their published formulas on
hand-made logits (OpenAI's presence/frequency penalties, HF's repetition penalty, logit_bias,
min_tokens over EOS and stop_token_ids), top-k and min-p sampling, logprobs; and in the engine,
penalized greedy decoding against a plain reference loop written here, stop_token_ids,
prompt_logprobs against a full forward, and token ids on every delta."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
import torch
from llmserve.engine import ContinuousBatchingEngine
from llmserve.engine_api import Delta, SamplingParams
from llmserve.logits import LogitsContext, process_logits
from llmserve.models import LoadedModel
from llmserve.sampling import PlainRow, pick_next_tokens

from tests.server.conftest import EngineFactory

PROMPT = [1, 504, 3458, 314, 260, 1345]


def params(**kwargs: Any) -> SamplingParams:
    return SamplingParams(**{"max_tokens": 8, "temperature": 0.0, **kwargs})


def processed(logits: list[float], row: PlainRow, eos: list[int] | None = None) -> list[float]:
    tensor = torch.tensor([logits])
    process_logits(tensor, [row], LogitsContext(eos or []))
    return tensor[0].tolist()


def test_presence_and_frequency_penalties_follow_openai_over_generated_tokens() -> None:
    row = PlainRow(
        params(presence_penalty=0.5, frequency_penalty=0.25),
        prompt_ids=[0, 0, 0],
        output_ids=[1, 1, 2, 1],
    )
    # token 1: 3 times -> 2.0 - 3*0.25 - 0.5; token 2: once; token 0 only in the prompt: untouched
    assert processed([1.0, 2.0, -1.0, 3.0], row) == [1.0, 0.75, -1.75, 3.0]


def test_repetition_penalty_follows_hf_over_prompt_and_output() -> None:
    row = PlainRow(params(repetition_penalty=2.0), prompt_ids=[0], output_ids=[2, 2])
    # seen tokens: positive logits divided, negative multiplied (once, however often seen)
    assert processed([4.0, 4.0, -1.5, -1.0], row) == [2.0, 4.0, -3.0, -1.0]


def test_logit_bias_adds_and_ignores_ids_outside_the_vocabulary() -> None:
    row = PlainRow(params(logit_bias=((3, -100.0), (0, 2.5), (99, 5.0), (-1, 5.0))))
    assert processed([1.0, 1.0, 1.0, 1.0], row) == [3.5, 1.0, 1.0, -99.0]


def test_min_tokens_masks_eos_and_stop_token_ids_until_reached() -> None:
    early = PlainRow(params(min_tokens=2, stop_token_ids=(3,)), output_ids=[5])
    assert processed([1.0] * 5, early, eos=[0]) == [-math.inf, 1.0, 1.0, -math.inf, 1.0]
    reached = PlainRow(params(min_tokens=2, stop_token_ids=(3,)), output_ids=[5, 5])
    assert processed([1.0] * 5, reached, eos=[0]) == [1.0] * 5


def test_rows_keep_their_own_processors_in_one_batch() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0]] * 3)
    rows = [
        PlainRow(params(logit_bias=((0, 10.0),))),
        PlainRow(params()),
        PlainRow(params(frequency_penalty=2.0), output_ids=[2]),
    ]
    assert [c.token for c in pick_next_tokens(logits, rows, LogitsContext())] == [0, 2, 1]


def draws(logits: torch.Tensor, row_params: SamplingParams, n: int = 400) -> set[int]:
    gen = torch.Generator().manual_seed(0)
    row = PlainRow(row_params, gen)
    return {pick_next_tokens(logits.clone(), [row], LogitsContext())[0].token for _ in range(n)}


def test_top_k_and_min_p_limit_what_is_drawn() -> None:
    logits = torch.tensor([[3.0, 2.9, 2.8, 2.7, 0.0, -1.0]])
    assert draws(logits, params(temperature=1.0)) == set(range(6))  # all reachable otherwise
    assert draws(logits, params(temperature=1.0, top_k=2)) == {0, 1}
    # min_p 0.5: tokens under half the top probability (e^-3 and e^-4 of it) are dropped
    assert draws(logits, params(temperature=1.0, min_p=0.5)) == {0, 1, 2, 3}
    assert draws(logits, params(temperature=1.0, top_k=3, top_p=0.4)) == {0, 1}


def test_logprobs_are_after_temperature_with_the_top_k_best_first() -> None:
    logits = torch.tensor([[0.5, 2.0, -1.0, 1.0], [0.5, 2.0, -1.0, 1.0]])
    rows = [
        PlainRow(params(logprobs=2)),
        PlainRow(
            params(temperature=0.5, seed=1, logprobs=0, top_k=1), torch.Generator().manual_seed(1)
        ),
    ]
    greedy, sampled = pick_next_tokens(logits.clone(), rows, LogitsContext())
    expected = torch.log_softmax(logits[0], -1)
    assert greedy.token == 1 and greedy.logprob is not None
    assert greedy.logprob.logprob == pytest.approx(float(expected[1]))
    assert [t for t, _ in greedy.logprob.top] == [1, 3]
    assert greedy.logprob.top[1][1] == pytest.approx(float(expected[3]))
    at_half = torch.log_softmax(logits[1] / 0.5, -1)
    assert sampled.token == 1 and sampled.logprob is not None and sampled.logprob.top == ()
    assert sampled.logprob.logprob == pytest.approx(float(at_half[1]))


# ----------------------------------------------------------------------------- in the engine
async def run(
    engine: ContinuousBatchingEngine, prompt: list[int], p: SamplingParams
) -> list[Delta]:
    return [d async for d in engine.submit(prompt, p)]


def reference_greedy(tiny: LoadedModel, prompt: list[int], p: SamplingParams) -> list[int]:
    """Greedy decoding the plain way: a full forward per token, the formulas written out."""
    out: list[int] = []
    for _ in range(p.max_tokens):
        with torch.no_grad():
            logits = tiny.model(torch.tensor([prompt + out])).logits[0, -1].float()
        for token, bias in p.logit_bias:
            logits[token] += bias
        for token in set(prompt + out):
            if p.repetition_penalty != 1.0:
                value = logits[token]
                logits[token] = (
                    value / p.repetition_penalty if value > 0 else (value * p.repetition_penalty)
                )
        for token in set(out):
            logits[token] -= p.frequency_penalty * out.count(token) + p.presence_penalty
        out.append(int(logits.argmax()))
    return out


# The random model never repeats a token by itself (peaked logits), so a large bias makes it
# repeat one, and the penalties then have something to push against.
REPEAT = ((13, 25.0), (17, 1.0))
PENALIZED = [
    params(max_tokens=24, ignore_eos=True),
    params(max_tokens=24, ignore_eos=True, logit_bias=REPEAT),
    params(
        max_tokens=24,
        ignore_eos=True,
        logit_bias=REPEAT,
        presence_penalty=1.5,
        frequency_penalty=0.8,
    ),
    params(max_tokens=24, ignore_eos=True, logit_bias=REPEAT, presence_penalty=-2.0),
    params(max_tokens=24, ignore_eos=True, logit_bias=REPEAT, repetition_penalty=1.8),
    params(max_tokens=24, ignore_eos=True, repetition_penalty=0.5),
]


def test_penalized_greedy_equals_the_reference_loop(
    tiny: LoadedModel, engine_factory: EngineFactory
) -> None:
    engine = engine_factory(max_batch=len(PENALIZED))

    async def together() -> list[list[Delta]]:
        return list(await asyncio.gather(*(run(engine, PROMPT, p) for p in PENALIZED)))

    answers = [[t for d in deltas for t in d.token_ids] for deltas in asyncio.run(together())]
    expected = [reference_greedy(tiny, PROMPT, p) for p in PENALIZED]
    assert answers == expected
    assert answers[1] == [13] * 24  # the bias alone: one token over and over
    assert len({tuple(a) for a in answers[:3] + answers[4:]}) == len(PENALIZED) - 1
    assert answers[3] == answers[1]  # a negative presence penalty only helps the repetition


def test_stop_token_ids_end_with_stop_after_min_tokens(
    tiny: LoadedModel, engine_factory: EngineFactory
) -> None:
    engine = engine_factory()
    first = reference_greedy(tiny, PROMPT, params(max_tokens=1))[0]
    stopped = asyncio.run(run(engine, PROMPT, params(stop_token_ids=(first,))))
    assert (stopped[-1].finish_reason, stopped[-1].completion_tokens) == ("stop", 1)
    assert [t for d in stopped for t in d.token_ids] == [first]
    assert "".join(d.text for d in stopped) == ""  # the stop token is not text
    later = asyncio.run(
        run(engine, PROMPT, params(max_tokens=30, stop_token_ids=(first,), min_tokens=4))
    )
    assert later[-1].completion_tokens >= 4
    assert all(first not in d.token_ids for d in later[:3])


def test_every_delta_carries_its_token_ids_and_logprobs(
    tiny: LoadedModel, engine_factory: EngineFactory
) -> None:
    engine = engine_factory()
    deltas = asyncio.run(run(engine, PROMPT, params(max_tokens=10, ignore_eos=True, logprobs=3)))
    ids = [t for d in deltas for t in d.token_ids]
    assert len(ids) == 10 and ids == reference_greedy(tiny, PROMPT, params(max_tokens=10))
    assert tiny.tokenizer.decode(ids, skip_special_tokens=True) == "".join(d.text for d in deltas)
    logprobs = [lp for d in deltas for lp in d.logprobs]
    assert [lp.token_id for lp in logprobs] == ids
    with torch.no_grad():
        full = torch.log_softmax(tiny.model(torch.tensor([PROMPT + ids])).logits[0].float(), -1)
    for n, lp in enumerate(logprobs):
        assert lp.logprob == pytest.approx(float(full[len(PROMPT) - 1 + n, ids[n]]), abs=1e-4)
        assert len(lp.top) == 3 and lp.top[0][0] == ids[n]  # greedy: the best is the chosen
    assert all(d.prompt_logprobs is None for d in deltas)


def test_prompt_logprobs_come_on_the_first_delta(
    tiny: LoadedModel, engine_factory: EngineFactory
) -> None:
    engine = engine_factory()
    deltas = asyncio.run(run(engine, PROMPT, params(max_tokens=3, prompt_logprobs=2)))
    first = deltas[0].prompt_logprobs
    assert first is not None and len(first) == len(PROMPT) and first[0] is None
    with torch.no_grad():
        full = torch.log_softmax(tiny.model(torch.tensor([PROMPT])).logits[0].float(), -1)
    for position, lp in enumerate(first[1:], start=1):
        assert lp is not None and lp.token_id == PROMPT[position]
        assert lp.logprob == pytest.approx(float(full[position - 1, PROMPT[position]]), abs=1e-4)
        assert [t for t, _ in lp.top] == full[position - 1].topk(2).indices.tolist()
    assert all(d.prompt_logprobs is None for d in deltas[1:])


def test_a_seed_gives_the_same_tokens_whatever_shares_the_batch(
    engine_factory: EngineFactory,
) -> None:
    engine = engine_factory(max_batch=6)
    seeded = params(
        max_tokens=20, temperature=0.9, top_k=40, min_p=0.02, seed=1234, ignore_eos=True, logprobs=1
    )

    async def alone() -> list[int]:
        return [t for d in await run(engine, PROMPT, seeded) for t in d.token_ids]

    async def crowded() -> list[int]:
        others = [
            params(max_tokens=15, temperature=1.0, ignore_eos=True),
            params(max_tokens=9, temperature=0.7, top_p=0.8, seed=5, ignore_eos=True),
            params(max_tokens=30, presence_penalty=1.0, ignore_eos=True, logprobs=2),
        ]
        results = await asyncio.gather(
            run(engine, PROMPT, seeded), *(run(engine, [1, 22, 7], p) for p in others)
        )
        return [t for d in results[0] for t in d.token_ids]

    expected = asyncio.run(alone())
    assert asyncio.run(crowded()) == expected
