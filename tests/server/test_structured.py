"""Structured outputs by constrained decoding: on a random-weight model (which left alone writes
no JSON at all) every constrained answer parses and validates against its schema, greedy and
sampled, in a batch shared with unconstrained requests whose greedy tokens stay what they are
alone; a schema that cannot be compiled is refused by submit; the ChatGLM2 SentencePiece
tokenizer is read too."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from llmserve.engine import ContinuousBatchingEngine
from llmserve.engine_api import Delta, SamplingParams, StructuredOutput, StructuredOutputError
from llmserve.logits import CLOSING_MARGIN
from llmserve.structured import JsonShape, apply_bitmask

from tests.server.conftest import EngineFactory

PROMPT = [1, 504, 3458, 314, 260, 1345]

SCHEMAS: dict[str, dict[str, Any]] = {
    "required-fields": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    },
    "enums": {
        "type": "object",
        "properties": {
            "color": {"enum": ["red", "green", "blue"]},
            "size": {"type": "string", "enum": ["S", "M", "L"]},
            "ok": {"type": "boolean"},
        },
        "required": ["color", "size", "ok"],
        "additionalProperties": False,
    },
    "arrays": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "scores": {"type": "array", "items": {"type": "number"}},
        },
        "required": ["tags", "scores"],
    },
    "nested": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer", "minimum": 0},
                    "address": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                        "required": ["city"],
                    },
                },
                "required": ["id", "address"],
            },
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
                    "required": ["sku", "qty"],
                },
            },
        },
        "required": ["user", "items"],
    },
    # Tool calling, as the API layer builds it for a forced function (Hermes style).
    "tool-call": {
        "type": "object",
        "properties": {
            "name": {"const": "get_weather"},
            "arguments": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
            },
        },
        "required": ["name", "arguments"],
    },
}


def structured(schema: dict[str, Any] | None) -> StructuredOutput:
    if schema is None:
        return StructuredOutput("json_object")
    return StructuredOutput("json_schema", json.dumps(schema))


async def run(
    engine: ContinuousBatchingEngine, prompt: list[int], params: SamplingParams
) -> list[Delta]:
    return [d async for d in engine.submit(prompt, params)]


def text(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


def check(deltas: list[Delta], schema: dict[str, Any] | None) -> Any:
    assert deltas[-1].finish_reason == "stop", text(deltas)
    value = json.loads(text(deltas))
    jsonschema.validate(value, schema if schema is not None else {"type": "object"})
    return value


@pytest.mark.parametrize("name", [*SCHEMAS, "json_object"])
def test_every_schema_gives_valid_json_on_random_weights_greedy_and_sampled(
    engine_factory: EngineFactory, name: str
) -> None:
    schema = SCHEMAS.get(name)
    engine = engine_factory([2], max_batch=4)
    params = [
        SamplingParams(max_tokens=120, temperature=0.0, structured=structured(schema)),
        SamplingParams(max_tokens=120, temperature=1.0, seed=7, structured=structured(schema)),
        SamplingParams(
            max_tokens=120,
            temperature=0.7,
            top_p=0.9,
            top_k=50,
            seed=8,
            structured=structured(schema),
        ),
    ]

    async def scenario() -> list[list[Delta]]:
        return list(await asyncio.gather(*(run(engine, PROMPT, p) for p in params)))

    for deltas in asyncio.run(scenario()):
        check(deltas, schema)
        assert sum(len(d.token_ids) for d in deltas) == deltas[-1].completion_tokens


def test_unconstrained_rows_keep_their_greedy_tokens_beside_constrained_ones(
    engine_factory: EngineFactory,
) -> None:
    engine = engine_factory([2], max_batch=8)
    plain = [([1, 22, 7], 30), ([1, 900, 901, 902], 45), (PROMPT, 12)]
    constrained = [structured(SCHEMAS["nested"]), structured(SCHEMAS["arrays"]), structured(None)]

    def greedy(tokens: int) -> SamplingParams:
        return SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)

    async def alone() -> list[tuple[int, ...]]:
        return [
            tuple(t for d in await run(engine, p, greedy(n)) for t in d.token_ids) for p, n in plain
        ]

    async def mixed() -> tuple[list[tuple[int, ...]], list[list[Delta]]]:
        async def late(i: int, coro: Any) -> Any:
            await asyncio.sleep(0.01 * i)  # join while others are mid-generation
            return await coro

        tasks = [late(i, run(engine, p, greedy(n))) for i, (p, n) in enumerate(plain)]
        tasks += [
            late(
                i,
                run(engine, PROMPT, SamplingParams(max_tokens=100, temperature=0.0, structured=s)),
            )
            for i, s in enumerate(constrained)
        ]
        done = await asyncio.gather(*tasks)
        return (
            [tuple(t for d in deltas for t in d.token_ids) for deltas in done[:3]],
            list(done[3:]),
        )

    expected = asyncio.run(alone())
    together, json_answers = asyncio.run(mixed())
    assert together == expected
    for deltas, s in zip(json_answers, [SCHEMAS["nested"], SCHEMAS["arrays"], None], strict=True):
        check(deltas, s)


def test_a_short_budget_still_closes_the_json(engine_factory: EngineFactory) -> None:
    """Inside the last CLOSING_MARGIN tokens the row is steered to close its value: a random
    model otherwise writes one endless string and is cut off (finish 'length', invalid JSON)."""
    engine = engine_factory([2])
    schema = SCHEMAS["required-fields"]
    for max_tokens in (CLOSING_MARGIN // 2, CLOSING_MARGIN + 20, 3 * CLOSING_MARGIN):
        deltas = asyncio.run(
            run(
                engine,
                PROMPT,
                SamplingParams(
                    max_tokens=max_tokens, temperature=0.0, structured=structured(schema)
                ),
            )
        )
        check(deltas, schema)
        assert deltas[-1].completion_tokens <= max_tokens


def test_without_the_mask_the_random_model_writes_no_json(engine_factory: EngineFactory) -> None:
    """The constraint is what makes the JSON: the same request unconstrained is not JSON."""
    engine = engine_factory([2])
    deltas = asyncio.run(run(engine, PROMPT, SamplingParams(max_tokens=60, temperature=0.0)))
    with pytest.raises(ValueError):
        json.loads(text(deltas))


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (StructuredOutput("json_schema", "{not json"), "not valid JSON"),
        (StructuredOutput("json_schema", None), "needs a schema"),
        (StructuredOutput("json_schema", "[1, 2]"), "must be a JSON object"),
        (StructuredOutput("json_schema", "false"), "no value can match"),
        (
            StructuredOutput(
                "json_schema",
                json.dumps({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}),
            ),
            "missing",
        ),
        (
            StructuredOutput(
                "json_schema", json.dumps({"type": "integer", "minimum": 5, "maximum": 1})
            ),
            "cannot be compiled",
        ),
        (StructuredOutput("yaml"), "allowed: json_object, json_schema"),
    ],
)
def test_a_schema_that_cannot_compile_is_refused_by_submit(
    engine_factory: EngineFactory, value: StructuredOutput, needle: str
) -> None:
    engine = engine_factory()

    async def submit() -> None:
        engine.submit(PROMPT, SamplingParams(max_tokens=8, structured=value))

    with pytest.raises(StructuredOutputError, match=needle) as caught:
        asyncio.run(submit())
    assert isinstance(caught.value, ValueError)
    assert engine.in_flight() == 0
    ok = asyncio.run(run(engine, PROMPT, SamplingParams(max_tokens=3, temperature=0.0)))
    assert ok[-1].finish_reason == "length"


def test_the_mask_forbids_exactly_the_unset_bits() -> None:
    logits = torch.zeros((3, 70))
    # bit 31 is int32's sign bit; word 2 bit 6 is token 70, past the vocabulary
    bitmask = torch.tensor([[0b101 | -(1 << 31), 0, 1 << 6], [-1, -1, -1]], dtype=torch.int32)
    apply_bitmask(logits, torch.tensor([0, 2]), bitmask)
    allowed = [torch.isfinite(row).nonzero().flatten().tolist() for row in logits]
    # row 0: tokens 0, 2 and 31; row 1 untouched; row 2 everything
    assert allowed == [[0, 2, 31], list(range(70)), list(range(70))]


def test_json_shape_tells_closing_bytes_from_string_text() -> None:
    shape = JsonShape()
    shape.feed(b'{"a": ["x]}')
    assert (shape.stack, shape.in_string) == (2, True)  # "]}" inside a string closes nothing
    assert shape.feed(b'\\"",') == 1 and shape.depth == 2  # an escaped quote, then the end
    shape.feed(b"]}")
    assert shape.depth == 0


def test_the_chatglm2_sentencepiece_tokenizer_is_constrained_too(tmp_path: Path) -> None:
    from llmserve.chatglm import load_chatglm
    from llmserve.chatglm_tokenizer import ChatGLM2Tokenizer

    from tests.server.test_chatglm import (
        CONFIG,
        chatglm_weights,
        train_sentencepiece,
        write_checkpoint,
    )

    checkpoint = write_checkpoint(
        tmp_path / "chatglm2-tiny", {**CONFIG, "padded_vocab_size": 512}, chatglm_weights(vocab=512)
    )
    train_sentencepiece(checkpoint / "tokenizer.model")
    tokenizer = ChatGLM2Tokenizer(checkpoint / "tokenizer.model")
    model = load_chatglm(checkpoint, torch.device("cpu"), torch.float32)
    engine = ContinuousBatchingEngine(model, tokenizer, max_model_len=256, eos_token_ids=[2])
    engine.start()
    schema = {
        "type": "object",
        "required": ["city", "n"],
        "properties": {
            "city": {"enum": ["北京", "London"]},
            "n": {"type": "integer"},
            "note": {"type": "string"},
        },
    }
    try:
        deltas = asyncio.run(
            run(
                engine,
                tokenizer.encode("你好"),
                SamplingParams(max_tokens=80, temperature=0.0, structured=structured(schema)),
            )
        )
    finally:
        engine.stop()
    assert check(deltas, schema)["city"] in ("北京", "London")
